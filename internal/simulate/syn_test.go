package simulate

import (
	"testing"
	"time"
)

// TestSYNDeadlineAbandons: with the dialer's SYN deadline on (it is off
// by default), an attempt whose SYN a full accept queue dropped is
// abandoned and redialled: each abandon is one failed connect() and one
// more attempt, the fleet still recovers, and an abandoned attempt adds
// no overflow of its own (the dropped SYN was the overflow).
func TestSYNDeadlineAbandons(t *testing.T) {
	m := DefaultModel()
	m.ConnCost, m.CmdCost, m.KillCost = 122*time.Microsecond, 19*time.Microsecond, 100*time.Microsecond
	m.NoticeCost, m.DialCost, m.ClientBurst = 26800*time.Nanosecond, 10700*time.Nanosecond, 1.19
	f := Fleet{Clients: 2000, Strategy: "stormguard", Scenario: "kill", Period: 3 * time.Second, Observe: true}
	off := run(t, m, f)
	f.Dialer.SYNDeadline = time.Second
	on := run(t, m, f)
	if off.ConnectFailures != 0 || off.ConnectAttempts != int64(f.Clients) {
		t.Errorf("deadline off: %d attempts, %d failed; want %d, none", off.ConnectAttempts, off.ConnectFailures, f.Clients)
	}
	if off.ListenOverflows == 0 {
		t.Fatal("the busy server did not overflow: nothing to abandon")
	}
	if on.ConnectFailures == 0 || on.ConnectAttempts != int64(f.Clients)+on.ConnectFailures {
		t.Errorf("deadline on: %d attempts, %d abandoned; want %d + the abandons", on.ConnectAttempts, on.ConnectFailures, f.Clients)
	}
	if !on.Recovered || !off.Recovered {
		t.Errorf("recovered: on %v, off %v", on.Recovered, off.Recovered)
	}
	if on.ConnectFailures > int64(on.ListenOverflows) {
		t.Errorf("%d abandons for %d overflows: an attempt abandoned without a dropped SYN", on.ConnectFailures, on.ListenOverflows)
	}
}
