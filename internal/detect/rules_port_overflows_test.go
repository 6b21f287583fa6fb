package detect

import (
	"strings"
	"testing"
	"time"
)

// TestRulePortOverflows drives the detector through table-driven
// sequences of samples around this port's own drop counter
// (listen.overflows_port, eBPF): a Valkey restart whose reconnect wave
// overflows the new listener's queue between two polls, the same restart
// within capacity, another listener's drops, a counter that falls with the
// recreated socket. The accept-queue polls read low throughout, and the
// namespace's other listeners are unknown (an explicit target), so the
// namespace-wide counters alone never blame this port (Principle 0).
func TestRulePortOverflows(t *testing.T) {
	calm := portStep{port: 0}
	tests := []struct {
		name    string
		initial float64 // the port counter's reading while warming up (drops from before the agent)
		steps   []portStep
		// wantStorm: the detector reaches storm; at names the storm
		// signals of the sample that took it there.
		wantStorm bool
		at        []string
	}{
		{"restart: the wave overflows the new queue between polls (9 drops)", 0,
			portRestart(9, 9), true, []string{"port_overflows"}},
		{"restart within capacity: no drop anywhere", 0,
			portRestart(0, 0), false, nil},
		{"restart without eBPF: the namespace counter alone is not this port's (queue read low, other listeners unknown)", 0,
			portRestart(noPortCount, 9), false, nil},
		{"another listener drops, this port's own counter stays", 0,
			[]portStep{calm, {port: 0, nsDrop: 40}, {port: 0, nsDrop: 40}, {port: 0, nsDrop: 40}}, false, nil},
		{"this port's drops and the namespace's in the same interval", 0,
			[]portStep{calm, {port: 3, nsDrop: 3}}, true, []string{"listen_drops", "port_overflows"}},
		{"this port's drops with the SNMP counters unreadable", 0,
			[]portStep{calm, {port: 0, noTCP: true}, {port: 5, noTCP: true}}, true, []string{"port_overflows"}},
		{"the recreated socket's count is below the old one's: a reset, never drops", 120,
			portRestart(4, 0), false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(500 * time.Millisecond)
			b.portDrops = f64(tc.initial)
			d := New(Config{})
			warm(t, d, b, 20, 20*time.Second)
			var evs []Event
			var at []string
			for i, st := range tc.steps {
				b.noListen, b.noValkey, b.noTCP = st.down, st.down, st.noTCP
				b.portDrops = nil
				if st.port != noPortCount {
					b.portDrops = f64(st.port)
				}
				_, ev := d.Observe(b.tick(20, st.nsDrop/b.dt.Seconds()))
				for _, e := range ev {
					if e.To == Storm && at == nil {
						at = stormSignalNames(d.View())
						t.Logf("step %d: %s", i, e.Verdict)
					}
				}
				evs = append(evs, ev...)
			}
			if gotStorm := at != nil; gotStorm != tc.wantStorm {
				t.Fatalf("storm %v, want %v (events %v)", gotStorm, tc.wantStorm, transitions(evs))
			}
			if !tc.wantStorm && len(evs) != 0 {
				t.Fatalf("want no event, got %v", transitions(evs))
			}
			if tc.wantStorm && strings.Join(at, ",") != strings.Join(tc.at, ",") {
				t.Errorf("storm signals %v, want %v", at, tc.at)
			}
		})
	}
}

// noPortCount: listen.overflows_port not read in a sample (no listener
// learned yet after a restart, or no eBPF at all).
const noPortCount = -1.0

// portStep is one sample of TestRulePortOverflows.
type portStep struct {
	port   float64 // cumulative listen.overflows_port, or noPortCount
	nsDrop float64 // namespace-wide listen drops counted in this interval
	down   bool    // Valkey down: no listener, no INFO
	noTCP  bool    // the SNMP counters unreadable
}

// portRestart is a Valkey restart as the agent sees it: three samples
// with no listener and no INFO; the reconnect wave, whose drops (nsDrop)
// the namespace counter counts while the new listener is not learned yet;
// then the new socket's own count (port, noPortCount without eBPF).
func portRestart(port, nsDrop float64) []portStep {
	return []portStep{
		{port: noPortCount, down: true}, {port: noPortCount, down: true}, {port: noPortCount, down: true},
		{port: noPortCount, nsDrop: nsDrop},
		{port: port}, {port: port}, {port: port},
	}
}

func stormSignalNames(v View) []string {
	var out []string
	for _, s := range v.Signals {
		if s.Level == LevelStorm {
			out = append(out, s.Name)
		}
	}
	return out
}
