package sample

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestWakesAllowance walks the rules of Wake: one at-once sample per level
// between regular samples, a higher level after a lower one at once, the
// allowance renewed by a regular sample or after an interval, and
// firings that arrive together merged to the highest level.
func TestWakesAllowance(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ws := newWakes(time.Second)
	ws.renew(t0)
	step := func(what string, fire []WakeLevel, at time.Time, wantLevel WakeLevel, wantNow bool) {
		t.Helper()
		for _, l := range fire {
			ws.fire(l)
		}
		level, now := ws.take(at)
		if level != wantLevel || now != wantNow {
			t.Errorf("%s: take = level %d, at once %v; want %d, %v", what, level, now, wantLevel, wantNow)
		}
		select {
		case <-ws.urgent:
			t.Errorf("%s: an urgent token was left after take", what)
		default:
		}
	}
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	step("nothing fired", nil, ms(1), 0, false)
	step("queue filling", []WakeLevel{WakeFilling}, ms(2), WakeFilling, true)
	step("filling again", []WakeLevel{WakeFilling}, ms(3), WakeFilling, false)
	step("first drop after filling", []WakeLevel{WakeDropped}, ms(4), WakeDropped, true)
	step("drop again", []WakeLevel{WakeDropped}, ms(5), WakeDropped, false)
	step("filling after a drop", []WakeLevel{WakeFilling}, ms(6), WakeFilling, false)
	ws.renew(ms(500)) // a regular sample
	step("both fired before the take", []WakeLevel{WakeFilling, WakeDropped, WakeFilling}, ms(501), WakeDropped, true)
	step("filling after that", []WakeLevel{WakeFilling}, ms(502), WakeFilling, false)
	step("an interval without a regular sample", []WakeLevel{WakeDropped}, ms(1501), WakeDropped, true)
}

// TestWakesUrgentToken: urgent holds a token exactly while the pending
// wake-up is to be sampled at once, which is what cuts a full sample
// short.
func TestWakesUrgentToken(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ws := newWakes(time.Hour)
	ws.renew(t0)
	urgent := func() bool {
		select {
		case <-ws.urgent:
			return true
		default:
			return false
		}
	}
	ws.fire(WakeDropped)
	if !urgent() {
		t.Fatal("a first drop left no urgent token")
	}
	ws.take(t0)
	ws.fire(WakeFilling)
	if urgent() {
		t.Error("a filling queue after a drop's at-once sample is not urgent")
	}
	ws.renew(t0.Add(time.Second)) // the regular sample that follows
	if !urgent() {
		t.Error("a wake-up pending when a regular sample starts is urgent")
	}
}

// countingSource is a prompt source that numbers its answers.
type countingSource struct{ n atomic.Uint64 }

func (*countingSource) Name() string { return "tcp" }
func (*countingSource) Prompt() bool { return true }
func (c *countingSource) Collect(_ context.Context, s *Sample) error {
	s.TCP = &TCP{ListenOverflows: U64(c.n.Add(1))}
	return nil
}

// TestSamplerDropAfterFillingSampledAtOnce is the storm that took 183 ms:
// the poller's half-full wake-up took the early sample, the drop came
// right after, and its wake-up waited for the spacing and then for the
// stalled Valkey. Interval, spacing and deadline are an hour here, so the
// drop's sample arriving at all shows it took the prompt path.
func TestSamplerDropAfterFillingSampledAtOnce(t *testing.T) {
	vk := &gatedSource{name: "valkey"}
	filling, dropped := make(chan struct{}, 1), make(chan struct{}, 1)
	samples := make(chan *Sample, 10)
	sm := &Sampler{Target: "t:1", Interval: time.Hour, FastInterval: time.Hour, Deadline: time.Hour,
		Sources: []Source{&countingSource{}, vk},
		Wakes:   []Wake{{C: filling, Level: WakeFilling}, {C: dropped, Level: WakeDropped}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go sm.Run(ctx, func(s *Sample) { samples <- s })
	next := func(what string) *Sample {
		t.Helper()
		select {
		case s := <-samples:
			return s
		case <-ctx.Done():
			t.Fatalf("no sample for %s", what)
			return nil
		}
	}
	if s := next("the regular sample"); s.Valkey == nil {
		t.Fatalf("regular sample lacks valkey: %v", s.Errors)
	}
	stall := make(chan struct{})
	defer close(stall)
	vk.gate.Store(&stall)
	filling <- struct{}{}
	if s := next("the filling queue"); s.Valkey != nil || s.Errors["valkey"] != lateReason || *s.TCP.ListenOverflows != 2 {
		t.Fatalf("filling queue's sample: valkey %v errors %v tcp %d; want the prompt part only", s.Valkey, s.Errors, *s.TCP.ListenOverflows)
	}
	dropped <- struct{}{}
	s := next("the first drop")
	if s.TCP == nil || *s.TCP.ListenOverflows != 3 {
		t.Errorf("drop's sample lacks a fresh prompt part: %+v", s.TCP)
	}
	if s.Valkey != nil || s.Errors["valkey"] == "" {
		t.Errorf("drop's sample: valkey %v, errors.valkey %q; want it left out", s.Valkey, s.Errors["valkey"])
	}
}

// TestSamplerWakeCutsFullSample: a drop while a regular sample waits for a
// stalled Valkey publishes that sample at once (Valkey late) and takes the
// drop's sample right after; the deadline is an hour.
func TestSamplerWakeCutsFullSample(t *testing.T) {
	vk := &gatedSource{name: "valkey"}
	stall := make(chan struct{})
	defer close(stall)
	vk.gate.Store(&stall)
	dropped := make(chan struct{}, 1)
	samples := make(chan *Sample, 10)
	sm := &Sampler{Target: "t:1", Interval: time.Hour, FastInterval: time.Hour, Deadline: time.Hour,
		Sources: []Source{&countingSource{}, vk},
		Wakes:   []Wake{{C: dropped, Level: WakeDropped}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go sm.Run(ctx, func(s *Sample) { samples <- s })
	dropped <- struct{}{}
	for i, want := range []string{lateReason, "stale: previous collection still running"} {
		select {
		case s := <-samples:
			if s.TCP == nil || *s.TCP.ListenOverflows != uint64(i+1) || s.Errors["valkey"] != want {
				t.Errorf("sample %d: tcp %+v errors.valkey %q; want a fresh prompt part and %q", i+1, s.TCP, s.Errors["valkey"], want)
			}
		case <-ctx.Done():
			t.Fatalf("sample %d never came: the regular sample waited for the stalled source", i+1)
		}
	}
}
