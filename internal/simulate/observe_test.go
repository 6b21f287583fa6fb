package simulate

import (
	"testing"
	"time"
)

// TestObserveCPU: instances that read the server's CPU times before the
// loss (ObserveCPU) start their reconnect window at the rate the server's
// headroom allows (the real dialer's ObserveServer), which on the default
// model's lightly loaded server is above AcceptRate: the fleet comes back
// sooner than with connected_clients alone, and everyone recovers.
func TestObserveCPU(t *testing.T) {
	m := DefaultModel()
	f := Fleet{Clients: 6000, Strategy: "stormguard", Scenario: "kill", Observe: true, Period: 3 * time.Second}
	base := run(t, m, f)
	f.ObserveCPU = true
	told := run(t, m, f)
	if !base.Recovered || !told.Recovered {
		t.Fatalf("recovered: clients only %v, with CPU %v", base.Recovered, told.Recovered)
	}
	if ttr(told) >= ttr(base) {
		t.Errorf("with the server's CPU known: %s to recover, not below %s with connected_clients alone", ttr(told), ttr(base))
	}
	t.Logf("6,000 clients: connected_clients only %d overflows / %s; with CPU %d / %s",
		base.ListenOverflows, ttr(base), told.ListenOverflows, ttr(told))
}
