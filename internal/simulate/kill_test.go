package simulate

import (
	"math"
	"testing"
	"time"

	"github.com/stormguard/stormguard/dialer"
)

// killWindow returns the connects of r's timeline in its first 1.8 s (an
// immediate fleet's redials as the kill's closes reach each client;
// retries come 2 s after the first dial), leading and trailing empty
// buckets cut.
func killWindow(r *Result) []int64 {
	tl := r.Timeline[:min(18, len(r.Timeline))]
	i, j := 0, len(tl)
	for i < j && tl[i] == 0 {
		i++
	}
	for j > i && tl[j-1] == 0 {
		j--
	}
	return tl[i:j]
}

func spanOf(r *Result) time.Duration {
	return time.Duration(len(killWindow(r))) * 100 * time.Millisecond
}

// TestKillTakesKillCostPerClient: a kill's closes reach a fleet on many
// hosts (no client-side queue) over clients × KillCost.
func TestKillTakesKillCostPerClient(t *testing.T) {
	m := DefaultModel()
	m.KillCost = 200 * time.Microsecond
	f := Fleet{Clients: 4000, Strategy: "immediate", Scenario: "kill", Period: time.Second}
	if got := spanOf(run(t, m, f)); got < 700*time.Millisecond || got > 900*time.Millisecond {
		t.Errorf("kill of 4000 at 200µs each: redials over %v, want ~0.8s", got)
	}
}

// TestGeneratorQueue: with the fleet on one load generator, the closes
// reach the clients only as fast as it notices them and makes their
// connects: a fleet redialling at once sees the kill spread over at least
// clients × (NoticeCost + DialCost) — more by the connects it finishes
// and the answers it reads meanwhile, which wait in the same line — one
// that waits (the dialer) over clients × NoticeCost and dials fewer
// meanwhile.
func TestGeneratorQueue(t *testing.T) {
	m := DefaultModel()
	m.NoticeCost, m.DialCost = 100*time.Microsecond, 100*time.Microsecond
	imm := run(t, m, Fleet{Clients: 4000, Strategy: "immediate", Scenario: "kill", Period: time.Second})
	// At most every connect finished and every answer read within the
	// spread: 4000 × (200 + 2 × 100) µs.
	if got := spanOf(imm); got < 700*time.Millisecond || got > 1700*time.Millisecond {
		t.Errorf("immediate: redials over %v, want 0.8-1.6s (4000 × 200µs, plus the connects finished meanwhile)", got)
	}
	sg := run(t, m, Fleet{Clients: 4000, Strategy: "stormguard", Scenario: "kill", Period: time.Second, Observe: true})
	if sg.ListenOverflows*10 > imm.ListenOverflows || !sg.Recovered || !imm.Recovered {
		t.Errorf("stormguard %d overflows (recovered %v), immediate %d (%v)", sg.ListenOverflows, sg.Recovered, imm.ListenOverflows, imm.Recovered)
	}
}

// TestClientBurst: a bursty client side (running in stretches between
// stalls) has its busiest 100 ms well above its mean rate, as the lab's
// kills did; an even one does not.
func TestClientBurst(t *testing.T) {
	m := DefaultModel()
	m.NoticeCost = 200 * time.Microsecond
	f := Fleet{Clients: 6000, Strategy: "immediate", Scenario: "kill", Period: time.Second}
	ratio := func(r *Result) (float64, int) {
		w := killWindow(r)
		var sum, peak int64
		for _, v := range w {
			sum += v
			peak = max(peak, v)
		}
		return float64(peak) * float64(len(w)) / float64(sum), len(w)
	}
	if b, _ := ratio(run(t, m, f)); b > 1.3 {
		t.Errorf("even client side: busiest bucket %.2f× the mean", b)
	}
	m.ClientBurst, m.NoticeCost = 2, 100*time.Microsecond // running half the time, twice as fast
	b, n := ratio(run(t, m, f))
	if b < 1.5 {
		t.Errorf("ClientBurst 2: busiest bucket only %.2f× the mean", b)
	}
	if n < 10 || n > 15 { // 6000 × 2 × 100 µs = 1.2 s on average
		t.Errorf("ClientBurst 2: kill seen over %d buckets, want ~12", n)
	}
}

// TestFitKill: the spread of the kill's closes and the connects made
// meanwhile, read off a lab timeline, give NoticeCost and DialCost back.
func TestFitKill(t *testing.T) {
	killed := int64(2000)
	mk := func(n int64, spanMS int64, dials int64) Observation {
		// Closes spread evenly over spanMS from t=0, dials alongside.
		var pts []Point
		for t := int64(-100); t < spanMS+300; t += 100 {
			var f, d int64
			if t >= 0 && t < spanMS {
				w := min(100, spanMS-t)
				f, d = n*w/spanMS, dials*w/spanMS
			}
			pts = append(pts, Point{TMS: t, FailedCommands: f, Connects: d})
		}
		return Observation{Clients: int(n), Scenario: "kill", Points: pts, KilledClients: &killed}
	}
	// span = n·100µs + dials·50µs (whole buckets: the lab's resolution)
	obs := []Observation{mk(2000, 300, 2000), mk(2000, 200, 0)}
	k, s, ok := fitKill(obs)
	if !ok {
		t.Fatal("no fit")
	}
	if math.Abs(k.Seconds()-100e-6) > 10e-6 || math.Abs(s.Seconds()-50e-6) > 10e-6 {
		t.Errorf("fit NoticeCost %v DialCost %v, want ~100µs and ~50µs", k, s)
	}
	if _, _, ok := fitKill([]Observation{{Clients: 10, Scenario: "kill"}}); ok {
		t.Error("fit without a timeline")
	}
	if b := killBurst(obs); b < 1 || b > 1.2 {
		t.Errorf("even kills: burst %.2f, want ~1", b)
	}
}

// TestClientBurstBunchesTimers: while the generator has a backlog (the
// kill's closes to notice), the dialer's timer-driven connects, spread
// evenly by its window, come in bursts at the ends of its stalls (the
// lab's dialer peaked at ~2× its window's rate); an idle generator wakes
// at once.
func TestClientBurstBunchesTimers(t *testing.T) {
	m := DefaultModel()
	m.NoticeCost = 100 * time.Microsecond
	f := Fleet{Clients: 8000, Strategy: "stormguard", Scenario: "kill", Period: time.Second, Observe: true,
		// Dials while the kill's closes are still noticed: the dialer
		// without its disconnect settle, at the lab's 3,000/s.
		Dialer: dialer.Options{DisconnectCost: -1, AcceptRate: 3000}}
	even := run(t, m, f)
	m.ClientBurst, m.NoticeCost = 2, 50*time.Microsecond // the same mean pace, in stretches
	bursty := run(t, m, f)
	if float64(bursty.PeakConnectsPerSec) < 1.3*float64(even.PeakConnectsPerSec) || !bursty.Recovered {
		t.Errorf("peak %d/s with stalls, %d/s without (recovered %v)", bursty.PeakConnectsPerSec, even.PeakConnectsPerSec, bursty.Recovered)
	}
}
