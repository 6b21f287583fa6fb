package sample

import (
	"context"
	"errors"
	"testing"
	"time"
)

// slowSource is a Slow source that counts its collects.
type slowSource struct {
	fakeSource
	period time.Duration
	n      int
}

func (s *slowSource) SlowPeriod() time.Duration { return s.period }
func (s *slowSource) Collect(ctx context.Context, out *Sample) error {
	s.n++
	n := uint64(s.n)
	out.Conntrack = &Conntrack{Count: &n}
	return s.fakeSource.Collect(ctx, out)
}

// clock is a manual clock for Sampler.Now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// TestSlowSourceCarried: at a 10 ms interval a Slow source of period
// 100 ms is read every 10th sample while not fast; the samples between
// carry its latest part, its error and its age; while fast, and at an
// interval of its period, it is read for every sample.
func TestSlowSourceCarried(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
	slow := &slowSource{fakeSource: fakeSource{name: "conntrack", err: errors.New("unavailable: partial")}, period: 100 * time.Millisecond}
	tcp := &promptSource{fakeSource{name: "tcp", fill: func(s *Sample) { s.TCP = &TCP{ListenOverflows: U64(1)} }}}
	sm := &Sampler{Target: "t:1", Port: 1, Interval: 10 * time.Millisecond, Now: clk.now, Sources: []Source{tcp, slow}}
	for i := 0; i < 25; i++ {
		s := sm.Once(context.Background())
		age, carried := s.SourceAgeMS["conntrack"]
		wantRead := i%10 == 0
		if carried == wantRead {
			t.Fatalf("sample %d: carried %v (age %v), want read %v", i, carried, age, wantRead)
		}
		if want := float64(10 * (i % 10)); carried && age != want {
			t.Errorf("sample %d: source_age_ms.conntrack %v, want %v", i, age, want)
		}
		if s.Conntrack == nil || *s.Conntrack.Count != uint64(i/10+1) {
			t.Errorf("sample %d: conntrack %+v, want reading %d", i, s.Conntrack, i/10+1)
		}
		if s.Errors["conntrack"] != "unavailable: partial" {
			t.Errorf("sample %d: errors.conntrack %q, want the reading's error", i, s.Errors["conntrack"])
		}
		if _, ok := s.SourceDurations["conntrack"]; !ok {
			t.Errorf("sample %d: source_ms.conntrack missing; a carried part keeps its reading's duration", i)
		}
		if s.TCP == nil {
			t.Errorf("sample %d: tcp missing: a prompt source is read for every sample", i)
		}
		clk.t = clk.t.Add(10 * time.Millisecond)
	}
	reads := slow.n
	sm.fastNow = true
	for i := 0; i < 5; i++ {
		if s := sm.Once(context.Background()); len(s.SourceAgeMS) != 0 {
			t.Errorf("fast sample %d carried %v; want every source read", i, s.SourceAgeMS)
		}
		clk.t = clk.t.Add(10 * time.Millisecond)
	}
	sm.fastNow = false
	sm.Interval = 100 * time.Millisecond
	for i := 0; i < 5; i++ {
		if s := sm.Once(context.Background()); len(s.SourceAgeMS) != 0 {
			t.Errorf("sample %d at the slow period carried %v; want every source read", i, s.SourceAgeMS)
		}
		// A little early, as a loaded machine's timer may be.
		clk.t = clk.t.Add(97 * time.Millisecond)
	}
	if got := slow.n - reads; got != 10 {
		t.Errorf("%d reads in 10 fast or slow-interval samples, want 10", got)
	}
}

// TestHandshakePendingCarried: while the valkey part is carried the sample
// repeats the last derived handshake_pending instead of deriving one from
// counters that stand still.
func TestHandshakePendingCarried(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
	var accepts, completed uint64
	eb := &promptSource{fakeSource{name: "ebpf", fill: func(s *Sample) { a := accepts; s.Accepts = &a }}}
	vk := &slowSource{fakeSource: fakeSource{name: "valkey"}, period: 100 * time.Millisecond}
	vk.fill = func(s *Sample) {
		c, r := completed, uint64(0)
		s.Conntrack = nil
		s.Valkey = &Valkey{TotalConnectionsReceived: &c, RejectedConnections: &r}
	}
	sm := &Sampler{Target: "t:1", Port: 1, Interval: 10 * time.Millisecond, Now: clk.now, Sources: []Source{eb, vk}}
	for i := 0; i < 30; i++ {
		// 10 accepts per sample, 8 of them complete: 2 pending per
		// sample, 20 per valkey reading.
		accepts += 10
		completed += 8
		s := sm.Once(context.Background())
		_, carried := s.SourceAgeMS["valkey"]
		switch {
		case i < 10 && s.HandshakePending != nil:
			t.Errorf("sample %d: handshake_pending %d before two valkey readings", i, *s.HandshakePending)
		case i < 10 && s.Errors["handshake_pending"] != pendingNoInterval:
			// the contract: a null key has its reason in errors
			t.Errorf("sample %d (carried %v): errors.handshake_pending %q, want %q", i, carried, s.Errors["handshake_pending"], pendingNoInterval)
		case i >= 10 && s.Errors["handshake_pending"] != "":
			t.Errorf("sample %d: errors.handshake_pending %q once derived", i, s.Errors["handshake_pending"])
		case i >= 10 && (s.HandshakePending == nil || *s.HandshakePending != 20):
			t.Errorf("sample %d (carried %v): handshake_pending %v, want 20 (over the 100 ms between valkey readings)", i, carried, s.HandshakePending)
		}
		clk.t = clk.t.Add(10 * time.Millisecond)
	}
}

// switchSlow is a prompt source whose SlowPeriod changes (the tcp source's
// is 0 until eBPF counts the listener's own overflows).
type switchSlow struct {
	promptSource
	period time.Duration
	n      int
}

func (s *switchSlow) SlowPeriod() time.Duration { return s.period }
func (s *switchSlow) Collect(ctx context.Context, out *Sample) error {
	s.n++
	return s.promptSource.Collect(ctx, out)
}

// TestSlowPeriodChanges: a source whose SlowPeriod is 0 is read for every
// sample; once it reports a period its reading is carried between reads,
// and when the period goes back to 0 every sample reads it again.
func TestSlowPeriodChanges(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
	src := &switchSlow{promptSource: promptSource{fakeSource{name: "tcp", fill: func(s *Sample) { s.TCP = &TCP{ListenOverflows: U64(1)} }}}}
	sm := &Sampler{Target: "t:1", Port: 1, Interval: 10 * time.Millisecond, Now: clk.now, Sources: []Source{src}}
	run := func(n int) (reads, carried int) {
		before := src.n
		for i := 0; i < n; i++ {
			s := sm.Once(context.Background())
			if _, ok := s.SourceAgeMS["tcp"]; ok {
				carried++
			}
			if s.TCP == nil {
				t.Fatalf("sample without the tcp part (read or carried)")
			}
			clk.t = clk.t.Add(10 * time.Millisecond)
		}
		return src.n - before, carried
	}
	if r, c := run(10); r != 10 || c != 0 {
		t.Errorf("period 0: %d reads, %d carried in 10 samples; want 10, 0", r, c)
	}
	src.period = 50 * time.Millisecond
	if r, c := run(10); r != 2 || c != 8 {
		t.Errorf("period 50 ms: %d reads, %d carried in 10 samples; want 2, 8", r, c)
	}
	src.period = 0
	if r, c := run(5); r != 5 || c != 0 {
		t.Errorf("period back to 0: %d reads, %d carried in 5 samples; want 5, 0", r, c)
	}
}

// TestWakeSampleReadsSlow: a wake-up's sample reads a slow source afresh
// even while calm; the regular one before it carried nothing yet (first
// reading), and a second regular read would have carried it.
func TestWakeSampleReadsSlow(t *testing.T) {
	src := &switchSlow{promptSource: promptSource{fakeSource{name: "tcp", fill: func(s *Sample) { s.TCP = &TCP{ListenOverflows: U64(1)} }}}, period: 2 * time.Hour}
	wake := make(chan struct{}, 1)
	sm := &Sampler{Target: "t:1", Port: 1, Interval: time.Hour, Sources: []Source{src},
		Wakes: []Wake{{C: wake, Level: WakeDropped}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *Sample, 4)
	go sm.Run(ctx, func(s *Sample) { got <- s })
	first := <-got
	if _, carried := first.SourceAgeMS["tcp"]; carried || src.n != 1 {
		t.Fatalf("first sample carried tcp (%v) or reads %d; want a fresh read", first.SourceAgeMS, src.n)
	}
	wake <- struct{}{}
	second := <-got
	if _, carried := second.SourceAgeMS["tcp"]; carried {
		t.Errorf("the wake-up's sample carried tcp (%v); want it read", second.SourceAgeMS)
	}
	if src.n != 2 {
		t.Errorf("%d reads after the wake-up, want 2", src.n)
	}
}
