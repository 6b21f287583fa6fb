package agent

import (
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/defuse"
	"github.com/stormguard/stormguard/internal/sample"
)

// admSample is a sample with the counters the admission controller reads.
func admSample(completed, accepted uint64) *sample.Sample {
	return &sample.Sample{Valkey: &sample.Valkey{TotalConnectionsReceived: sample.U64(completed)}, Accepts: sample.U64(accepted)}
}

// TestAdmissionResize walks the controller through the phases of a TLS
// storm with windows of one second: the drain of abandoned connections,
// a server that finishes what it is given while the limit drops SYNs, and
// a server that falls behind.
func TestAdmissionResize(t *testing.T) {
	o := &AutoDefuse{}
	if err := o.normalize(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	var ad admission
	// Before the storm: a burst of 300 completions/s, then the storm.
	ad.observe(o, admSample(0, 0), t0)
	ad.observe(o, admSample(300, 300), t0.Add(time.Second))
	if got := ad.firstRate(o); got != 150 {
		t.Fatalf("first rate %v, want half the recent completion peak (150)", got)
	}
	ad.rate, ad.globalID = 150, "g1"

	step := func(i int, completed, accepted, dropped uint64) {
		ad.globalPackets += dropped
		ad.observe(o, admSample(ad.done+completed, ad.acc+accepted), t0.Add(time.Duration(i)*time.Second))
	}
	// Draining: Valkey accepts 400/s, far more than the 150/s admitted,
	// and none become clients: connections queued before the limit.
	// Hold.
	step(2, 0, 400, 1000)
	if ad.want != 0 {
		t.Fatalf("draining: want %v, expected no change", ad.want)
	}
	// Behind with what the limit admits: 150 accepted, none finished:
	// halve, no lower.
	step(3, 0, 150, 1000)
	if ad.want != 75 {
		t.Fatalf("behind: want %v, expected 75 (half)", ad.want)
	}
	ad.rate, ad.want = 75, 0
	// Healthy and held back: grow by half.
	step(4, 74, 75, 5000)
	if ad.want != 112.5 {
		t.Fatalf("healthy under the limit: want %v, expected 112.5", ad.want)
	}
	ad.rate, ad.want = 112.5, 0
	// Healthy, the limit no longer dropping: stay.
	step(5, 60, 60, 0)
	if ad.want != 0 {
		t.Fatalf("limit idle: want %v, expected no change", ad.want)
	}
	// Behind: 110 accepted, 70 finished: 0.8 × 70 = 56 (above half of 112.5).
	step(6, 70, 110, 3000)
	if ad.want != 56.25 {
		t.Fatalf("falling behind: want %v, expected 56.25", ad.want)
	}
	// Never below the minimum rate (5/s).
	ad.rate, ad.want = 8, 0
	step(7, 0, 8, 100)
	if ad.want != 5 {
		t.Fatalf("falling behind near the floor: want %v, expected the minimum 5", ad.want)
	}
	ad.rate, ad.want = 5, 0
	step(8, 0, 5, 100)
	if ad.want != 0 {
		t.Fatalf("at the floor: want %v, expected no change", ad.want)
	}
	ad.rate = 6
	step(9, 0, 6, 100)
	if ad.want != 0 {
		t.Fatalf("a change under %v%% is not worth a re-arming: want %v", admissionStep*100, ad.want)
	}
	// A missing or carried INFO reading closes the window: no decision.
	ad.observe(o, &sample.Sample{}, t0.Add(10*time.Second))
	if ad.open {
		t.Fatal("window still open without counters")
	}
	s := admSample(ad.done, ad.acc)
	s.SourceAgeMS = map[string]float64{"valkey": 2000}
	ad.observe(o, s, t0.Add(11*time.Second))
	if ad.open {
		t.Fatal("window opened on a carried INFO reading")
	}
}

func TestAdmissionDefaults(t *testing.T) {
	o := &AutoDefuse{}
	if err := o.normalize(); err != nil {
		t.Fatal(err)
	}
	if len(o.Actions) != 2 || o.Actions[0] != defuse.RatelimitSYN || o.Actions[1] != defuse.RatelimitGlobal {
		t.Fatalf("default actions %v, want ratelimit-syn and the admission limit", o.Actions)
	}
	var ad admission
	if got := ad.firstRate(o); got != 20 {
		t.Fatalf("first rate without history %v, want the configured 20/s", got)
	}
	if got := perSecond(0.2); got.N != 1 {
		t.Fatalf("perSecond(0.2) = %v, want at least 1/s", got)
	}
}
