package simulate

import (
	"math"
	"testing"
	"time"
)

// killWindow returns the connects of r's timeline in its first 1.8 s (an
// immediate fleet's redials as the kill reaches each client; retries
// come 2 s after the first dial), leading and trailing empty buckets cut.
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

// TestKillTakesKillCostPerClient: a kill keeps the clients' closes (and
// so an immediate fleet's redials) coming for about clients × KillCost,
// and every connect the client side makes meanwhile lengthens it by
// DialSteal.
func TestKillTakesKillCostPerClient(t *testing.T) {
	m := DefaultModel()
	m.KillCost = 200 * time.Microsecond
	f := Fleet{Clients: 4000, Strategy: "immediate", Scenario: "kill", Period: time.Second}
	span := func(r *Result) time.Duration { return time.Duration(len(killWindow(r))) * 100 * time.Millisecond }
	even := span(run(t, m, f)) // 4000 × 200 µs = 0.8 s
	if even < 700*time.Millisecond || even > 900*time.Millisecond {
		t.Errorf("kill of 4000 at 200µs each: redials over %v, want ~0.8s", even)
	}
	m.DialSteal = 100 * time.Microsecond // each redial costs Valkey 100 µs more: 4000 × 300 µs
	if got := span(run(t, m, f)); got < even+300*time.Millisecond {
		t.Errorf("with DialSteal the kill took %v, without %v: want ~0.4 s longer", got, even)
	}
}

// TestKillBurst: a bursty kill keeps its mean duration but its busiest
// 100 ms sees well above the mean rate, as the lab's kills did; an even
// one does not.
func TestKillBurst(t *testing.T) {
	m := DefaultModel()
	m.KillCost = 200 * time.Microsecond
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
		t.Errorf("even kill: busiest bucket %.2f× the mean", b)
	}
	m.KillBurst = 2
	b, n := ratio(run(t, m, f))
	if b < 1.5 {
		t.Errorf("KillBurst 2: busiest bucket only %.2f× the mean", b)
	}
	if n < 10 || n > 16 { // 6000 × 200 µs = 1.2 s on average
		t.Errorf("KillBurst 2: kill over %d buckets, want ~12", n)
	}
}

// TestFitKill: the kill's duration and its connects, read off a lab
// timeline, give KillCost and DialSteal back.
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
		t.Errorf("fit KillCost %v DialSteal %v, want ~100µs and ~50µs", k, s)
	}
	if _, _, ok := fitKill([]Observation{{Clients: 10, Scenario: "kill"}}); ok {
		t.Error("fit without a timeline")
	}
	if b := killBurst(obs); b < 1 || b > 1.2 {
		t.Errorf("even kills: burst %.2f, want ~1", b)
	}
}
