package simulate

import (
	"math"
	"testing"
	"time"
)

// TestAnswerCost: the client side's cost of writing a new connection's
// PING and reading its answer is AnswerCost when set: cheap answers are
// read as soon as the kill's closes are noticed (the lab's burst), where
// at a notice's cost each they spread the fleet's recovery over as long
// again.
func TestAnswerCost(t *testing.T) {
	m := DefaultModel()
	m.NoticeCost, m.DialCost = 50*time.Microsecond, 10*time.Microsecond
	f := Fleet{Clients: 3000, Strategy: "immediate", Scenario: "kill", Period: 3 * time.Second}
	slow := run(t, m, f)
	m.AnswerCost = 2 * time.Microsecond
	fast := run(t, m, f)
	if *fast.RecoverP50MS >= *slow.RecoverP50MS {
		t.Errorf("recover p50 with answers at 2µs %d ms, at the notice's 50µs %d ms: want earlier", *fast.RecoverP50MS, *slow.RecoverP50MS)
	}
	// 3000 × (50+10) µs of notices and dials: the median client is back
	// within the kill's spread plus a little, not after 3000 × 160 µs.
	if p50 := time.Duration(*fast.RecoverP50MS) * time.Millisecond; p50 > 250*time.Millisecond {
		t.Errorf("recover p50 with cheap answers %v, want within the 180 ms of notices (+ a bucket)", p50)
	}
}

// TestFitAnswer: the answer cost is bounded by the busiest 100 ms of
// answers after the disruption (two jobs each), the tightest over the
// kills; a run without a kill timeline has none.
func TestFitAnswer(t *testing.T) {
	mk := func(peak int64) Observation {
		return Observation{Scenario: "kill", Points: []Point{
			{TMS: -213, OKCommands: 9000}, // before the kill: not an answer burst
			{TMS: -13, OKCommands: 30, FailedCommands: 3000},
			{TMS: 87, OKCommands: peak},
			{TMS: 187, OKCommands: peak / 2},
		}}
	}
	got, ok := fitAnswer([]Observation{mk(2500), mk(5000), {Scenario: "restart"}})
	if want := 10 * time.Microsecond; !ok || got != want {
		t.Errorf("fitAnswer = %v, %v; want %v (100 ms / (2 × 5000))", got, ok, want)
	}
	if _, ok := fitAnswer([]Observation{{Scenario: "kill"}}); ok {
		t.Error("fitAnswer without a timeline: want none")
	}
}

// TestServerCPU: the model's Valkey CPU from t0 is the kill, every
// accepted connection and first command, every loop turn and the
// established clients' commands — bounded by the work it must have done
// and by that work with a turn per connection.
func TestServerCPU(t *testing.T) {
	m := DefaultModel()
	m.ConnCost, m.CmdCost, m.KillCost, m.CycleCost = 30*time.Microsecond, 5*time.Microsecond, 10*time.Microsecond, 20*time.Microsecond
	f := Fleet{Clients: 2000, Strategy: "full-jitter", Scenario: "kill", Period: time.Second}
	r := run(t, m, f)
	n := float64(f.Clients)
	per := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	// Every client: freed by the kill, accepted, its first command
	// served; the established commands add at most clients × run time.
	floor := n * per(m.KillCost+m.ConnCost+m.CmdCost)
	run := time.Duration(*r.TimeToRecoverMS) * time.Millisecond
	ceil := floor + n*per(m.CycleCost) + n*per(m.CmdCost)*(run+time.Second).Seconds()/f.Period.Seconds()
	if r.ServerCPUMS < floor || r.ServerCPUMS > ceil || math.IsNaN(r.ServerCPUMS) {
		t.Errorf("server CPU %.1f ms, want within %.1f-%.1f ms", r.ServerCPUMS, floor, ceil)
	}
}

// TestDroppedDialIsCheap: the client side's connect() costs DialCost
// when its SYN finds room, droppedDialShare of it when the accept queue
// is full (the SYN is dropped at its arrival; on loopback the rest of
// the handshake would run on the client's CPU), refusedDialShare when
// the server is down (the lab client's dial pays its socket, connect,
// error and close).
func TestDroppedDialIsCheap(t *testing.T) {
	m := DefaultModel().withDefaults()
	m.DialCost = 100 * time.Microsecond
	cost := func(queued int, up bool) time.Duration {
		s := &sim{m: m, f: Fleet{}.withDefaults(), up: up}
		for range queued {
			s.acceptQ = append(s.acceptQ, &sock{})
		}
		s.gen.dials.push(genJob{kind: jobDial})
		s.genStart()
		return s.ev[0].at
	}
	full := time.Duration(float64(m.DialCost) * droppedDialShare)
	refused := time.Duration(float64(m.DialCost) * refusedDialShare)
	for _, c := range []struct {
		queued int
		up     bool
		want   time.Duration
	}{{0, true, m.DialCost}, {m.acceptLimit(), true, m.DialCost}, {m.acceptLimit() + 1, true, full}, {0, false, refused}} {
		if got := cost(c.queued, c.up); got != c.want {
			t.Errorf("dial with %d queued (server up %v) costs %v, want %v", c.queued, c.up, got, c.want)
		}
	}
	// A measured RefusedDialCost replaces the share for refused dials
	// only.
	m.RefusedDialCost = 70 * time.Microsecond
	if got := cost(0, false); got != m.RefusedDialCost {
		t.Errorf("refused dial with RefusedDialCost %v costs %v", m.RefusedDialCost, got)
	}
	if got := cost(0, true); got != m.DialCost {
		t.Errorf("accepted dial with RefusedDialCost set costs %v, want DialCost %v", got, m.DialCost)
	}
}

// TestErrorOfServerCPU: a lab result with Valkey's own CPU over its
// window adds the model's CPU over that window as a fourth term; without
// it the error is the three figures'.
func TestErrorOfServerCPU(t *testing.T) {
	ttrMS, ov := int64(1000), uint64(100)
	r := &Result{PeakConnectsPerSec: 1000, ListenOverflows: 100, TimeToRecoverMS: &ttrMS, ServerCPUMS: 50,
		end: time.Second, steady: 0.01}
	o := Observation{PeakConnectsPerSec: 1000, ListenOverflows: &ov, TimeToRecoverMS: &ttrMS}
	if e := errorOf(o, r); e != 0 {
		t.Errorf("error without CPU = %v, want 0", e)
	}
	// 3 s window: the model's 50 ms to its end at 1 s, then 2 s at 1% of
	// a core = 70 ms; the lab's 3.5% × 3 s = 105 ms: |70-105|/105 = 1/3.
	pct := 3.5
	o.ServerCPUPercent, o.DurationMS = &pct, 3000
	if e, want := errorOf(o, r), 1.0/3/4; math.Abs(e-want) > 1e-9 {
		t.Errorf("error with the lab's CPU = %v, want %v", e, want)
	}
}

// TestFitCycleCost: with Valkey's CPU in a lab result, the turn's fixed
// cost is fitted below the given one (the best of its steps); without,
// it stays.
func TestFitCycleCost(t *testing.T) {
	m := DefaultModel()
	score := func(t Model) (float64, error) {
		return math.Abs(float64(t.CycleCost - 5*time.Microsecond)), nil
	}
	pct := 5.0
	withCPU := []Observation{{ServerCPUPercent: &pct, DurationMS: 3000}}
	got, best, err := fitCycleCost(m, withCPU, 1e12, score)
	if err != nil || got.CycleCost != 5*time.Microsecond || best != 0 {
		t.Errorf("fitCycleCost with the lab's CPU: %v (score %v, %v), want 5µs", got.CycleCost, best, err)
	}
	got, _, _ = fitCycleCost(m, []Observation{{}}, 1e12, score)
	if got.CycleCost != m.CycleCost {
		t.Errorf("fitCycleCost without the lab's CPU: %v, want the given %v", got.CycleCost, m.CycleCost)
	}
}
