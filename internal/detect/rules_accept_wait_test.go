package detect

import (
	"testing"
	"time"
)

// TestRuleAcceptWait drives the accept-wait rule through the detector's
// memory with table-driven sequences of (p99 wait, rate high) samples.
func TestRuleAcceptWait(t *testing.T) {
	cfg := Config{}.withDefaults()
	base := 2.0 // ms: threshold max(10 × 2, 50) = 50 ms
	tests := []struct {
		name  string
		waits []float64 // -1: no accept this sample (nil)
		high  bool      // new connections above their threshold
		want  []bool    // signal per sample
	}{
		{"rising while arrivals surge", []float64{60, 80, 120, 200}, true, []bool{false, false, true, true}},
		{"rising but no surge of arrivals (slow command)", []float64{60, 80, 120, 200}, false, []bool{false, false, false, false}},
		{"high but falling restarts the run", []float64{60, 80, 70, 90, 100}, true, []bool{false, false, false, false, true}},
		{"below threshold", []float64{10, 20, 30, 49}, true, []bool{false, false, false, false}},
		{"a sample without accepts breaks the run", []float64{60, 80, -1, 120, 200}, true, []bool{false, false, false, false, false}},
		{"flat high counts as not falling", []float64{100, 100, 100}, true, []bool{false, false, true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m ruleMemory
			now := time.Unix(1000, 0)
			rate, thr := 500.0, 100.0
			if !tc.high {
				rate = 50
			}
			for i, w := range tc.waits {
				v := &View{Time: now.Add(time.Duration(i) * time.Second), AcceptWaitBaselineMS: &base}
				if w >= 0 {
					v.AcceptWaitP99MS = f64(w)
				}
				in := &input{cfg: &cfg, v: v, d: &derived{}, conns: newConnLevels{vRate: &rate, vThr: thr, vBase: f64(10)}}
				m.track(in)
				var e evaluation
				ruleAcceptWait(&m, in, &e)
				got := len(e.signals) == 1 && e.signals[0].Name == "accept_wait_rising" && e.surge && !e.storm
				if got != tc.want[i] {
					t.Fatalf("sample %d (wait %v): signal %v, want %v (%+v)", i, w, got, tc.want[i], e.signals)
				}
				if got && (e.signals[0].Threshold != 50 || e.signals[0].Value != w) {
					t.Errorf("sample %d: value %v threshold %v, want %v and 50", i, e.signals[0].Value, e.signals[0].Threshold, w)
				}
			}
		})
	}
}
