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
	ad.glob.armed("g1", 150)
	ad.src.armed("s1", 20)

	cpu, cpuUsed := 0.0, 0.0
	step := func(i int, completed, accepted, globDropped, srcDropped uint64) {
		ad.glob.packets += globDropped
		ad.src.packets += srcDropped
		cpuUsed += cpu
		s := admSample(ad.start.done+completed, ad.start.acc+accepted)
		s.Valkey.UsedCPUUser, s.Valkey.UsedCPUSys = sample.F64(cpuUsed), sample.F64(0)
		ad.observe(o, s, t0.Add(time.Duration(i)*time.Second))
	}
	check := func(what string, glob, src float64) {
		t.Helper()
		if ad.glob.want != glob || ad.src.want != src {
			t.Fatalf("%s: want global %v per-source %v, expected %v and %v (0: unchanged)", what, ad.glob.want, ad.src.want, glob, src)
		}
		if glob > 0 {
			ad.glob.rate, ad.glob.want = glob, 0
		}
		if src > 0 {
			ad.src.rate, ad.src.want = src, 0
		}
	}
	// Draining: Valkey accepts 400/s, far more than the 150/s admitted,
	// and none become clients: connections queued before the limit. Hold.
	step(2, 0, 400, 1000, 1000)
	check("draining", 0, 0)
	// Behind with what the limit admits: 150 accepted, none finished:
	// halve, no lower.
	step(3, 0, 150, 1000, 1000)
	check("behind", 75, 0)
	// Keeping up while the admission limit drops SYNs: it grows, by a
	// quarter now that it has been cut once.
	step(4, 74, 75, 5000, 100)
	check("keeping up, admission limit dropping", 93.75, 0)
	// Keeping up, only the per-source limit dropping: that one grows.
	step(5, 100, 100, 0, 300)
	check("keeping up, only the per-source limit dropping", 0, 25)
	// Keeping up and dropping, but Valkey's main thread 90% busy: hold.
	cpu = 0.9
	step(6, 90, 90, 5000, 100)
	check("keeping up with no CPU left", 0, 0)
	cpu = 0
	// Keeping up, nothing dropped: stay.
	step(7, 60, 60, 0, 0)
	check("limits idle", 0, 0)
	// Behind: 110 accepted, 70 finished: 0.8 × 70 = 56 (above half of
	// 93.75); the per-source limit is left alone.
	step(8, 70, 110, 3000, 3000)
	check("falling behind", 56, 0)
	// Never below the minimum rate (5/s).
	ad.glob.rate = 8
	step(9, 0, 8, 100, 100)
	check("falling behind near the floor", 5, 0)
	step(10, 0, 5, 100, 100)
	check("at the floor", 0, 0)
	ad.glob.rate = 6
	step(11, 0, 6, 100, 100)
	check("a change under 25% is not worth a re-arming", 0, 0)
}

// TestAdmissionWithoutINFO: a Valkey starved of CPU answers INFO late or
// not at all. A sample without it (or with a carried one) keeps the window
// open; after admissionBlind the kernel's counts decide alone: an accept
// queue that overflowed cuts the rate to what Valkey accepted, and
// nothing grows without INFO.
func TestAdmissionWithoutINFO(t *testing.T) {
	o := &AutoDefuse{}
	if err := o.normalize(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	kernel := func(accepted, overflows uint64) *sample.Sample {
		return &sample.Sample{Accepts: sample.U64(accepted), Listen: &sample.Listen{OverflowsPort: sample.U64(overflows)}}
	}
	var ad admission
	ad.glob.armed("g1", 160)
	ad.src.armed("s1", 20)
	s := kernel(0, 0)
	s.Valkey = &sample.Valkey{TotalConnectionsReceived: sample.U64(0)}
	ad.observe(o, s, t0)
	// One second later INFO is missing: the window stays open, undecided.
	ad.observe(o, kernel(100, 50), t0.Add(time.Second))
	if !ad.open || ad.glob.want != 0 {
		t.Fatalf("missing INFO: open %v want %v; expected an open window and no decision", ad.open, ad.glob.want)
	}
	// A carried INFO reading counts as none.
	s = kernel(200, 100)
	s.Valkey = &sample.Valkey{TotalConnectionsReceived: sample.U64(150)}
	s.SourceAgeMS = map[string]float64{"valkey": 2000}
	ad.observe(o, s, t0.Add(2*time.Second))
	if ad.glob.want != 0 {
		t.Fatalf("carried INFO: want %v, expected no decision", ad.glob.want)
	}
	// After admissionBlind: the queue overflowed while Valkey accepted
	// 100/s: 80% of that (above half of 160).
	ad.observe(o, kernel(300, 150), t0.Add(admissionBlind))
	if ad.glob.want != 80 || ad.src.want != 0 {
		t.Fatalf("blind, overflowing: want %v/%v, expected 80 and no per-source change", ad.glob.want, ad.src.want)
	}
	ad.glob.rate, ad.glob.want = 80, 0
	// Blind and not overflowing while both limits drop: hold.
	ad.glob.packets, ad.src.packets = 500, 500
	ad.observe(o, kernel(540, 150), t0.Add(2*admissionBlind))
	if ad.glob.want != 0 || ad.src.want != 0 {
		t.Fatalf("blind, queue fine: want %v/%v, expected no change", ad.glob.want, ad.src.want)
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
	if got := ad.srcRate(o); got != 20 {
		t.Fatalf("per-source rate without history %v, want the configured 20/s", got)
	}
	if got := ad.firstRate(o); got != 20 {
		t.Fatalf("first rate without history %v, want the configured 20/s", got)
	}
	if got := perSecond(0.2); got.N != 1 {
		t.Fatalf("perSecond(0.2) = %v, want at least 1/s", got)
	}
}
