package sample

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type fakeSource struct {
	name  string
	block chan struct{} // when set, Collect waits for it (ignoring ctx)
	err   error
	fill  func(*Sample)
}

func (f *fakeSource) Name() string { return f.name }
func (f *fakeSource) Collect(ctx context.Context, s *Sample) error {
	if f.block != nil {
		<-f.block
	}
	if f.fill != nil {
		f.fill(s)
	}
	return f.err
}

func TestSamplerDeadlineAndStale(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	sm := &Sampler{
		Target: "t:1", Port: 1, Interval: 100 * time.Millisecond, Deadline: 50 * time.Millisecond,
		Sources: []Source{
			&fakeSource{name: "tcp", fill: func(s *Sample) { s.TCP = &TCP{ListenOverflows: U64(7)} }},
			&fakeSource{name: "valkey", block: stuck, fill: func(s *Sample) { s.Valkey = &Valkey{ConnectedClients: U64(1)} }},
			&fakeSource{name: "conntrack", err: errors.New("unavailable: module not loaded")},
		},
	}
	// The valkey source blocks until the test ends, so Once returning at
	// all proves the stuck source did not hold the sample back. The bound
	// only turns a hang into a failure.
	got := make(chan *Sample, 1)
	go func() { got <- sm.Once(context.Background()) }()
	var s *Sample
	select {
	case s = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("a stuck source held the sample back")
	}
	if s.TCP == nil || *s.TCP.ListenOverflows != 7 {
		t.Errorf("fast source's part missing: %+v", s.TCP)
	}
	if s.Valkey != nil {
		t.Errorf("a source that missed its deadline must leave its part nil")
	}
	if !strings.HasPrefix(s.Errors["valkey"], "timeout") {
		t.Errorf("errors.valkey = %q, want a timeout", s.Errors["valkey"])
	}
	if s.Errors["conntrack"] != "unavailable: module not loaded" {
		t.Errorf("errors.conntrack = %q", s.Errors["conntrack"])
	}
	if _, ok := s.Errors["tcp"]; ok {
		t.Errorf("tcp answered but has an error")
	}
	// The stuck source is not started again: no goroutine pile-up.
	s2 := sm.Once(context.Background())
	if !strings.HasPrefix(s2.Errors["valkey"], "stale") {
		t.Errorf("second sample errors.valkey = %q, want stale", s2.Errors["valkey"])
	}
	if s2.IntervalMS <= 0 {
		t.Errorf("second sample has no interval")
	}
}

func TestSamplerRunPublishesEveryInterval(t *testing.T) {
	// The source never answers until the test ends: every sample after
	// the first proves a stuck source does not stop samples from coming.
	stuck := make(chan struct{})
	defer close(stuck)
	sm := &Sampler{Target: "t:1", Interval: 20 * time.Millisecond,
		Sources: []Source{&fakeSource{name: "slow", block: stuck}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n int
	sm.Run(ctx, func(*Sample) {
		if n++; n == 5 {
			cancel()
		}
	})
	if n < 5 {
		t.Fatalf("%d samples before the 30s bound with a stuck source; want 5", n)
	}
}

func TestSamplerWakeAndFast(t *testing.T) {
	src := &fakeSource{name: "listenq"}
	wake := make(chan struct{}, 1)
	var fast atomic.Bool
	times := make(chan time.Time, 100)
	// The interval is far longer than the test's bound, so every sample
	// after the first one comes from a wake-up or from fast mode.
	sm := &Sampler{Target: "t:1", Interval: time.Hour, FastInterval: 20 * time.Millisecond,
		Sources: []Source{src}, Fast: fast.Load, Wakes: []Wake{{C: wake}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go sm.Run(ctx, func(s *Sample) { times <- s.Time })
	<-times // the first sample comes at once
	wake <- struct{}{}
	select {
	case <-times:
	case <-ctx.Done():
		t.Fatal("a wake-up did not produce a sample")
	}
	// While Fast says so, samples come every FastInterval.
	fast.Store(true)
	wake <- struct{}{}
	<-times
	for i := 0; i < 5; i++ {
		select {
		case <-times:
		case <-ctx.Done():
			t.Fatalf("fast mode produced %d samples; want 5", i)
		}
	}
}

func TestHandshakePending(t *testing.T) {
	c := func(acc, done, rej uint64) setupCounters {
		return setupCounters{ok: true, accepts: acc, completed: done, rejected: rej}
	}
	tests := []struct {
		name      string
		prev, cur setupCounters
		want      uint64
		wantWhy   string
	}{
		{"no previous sample", setupCounters{}, c(10, 5, 0), 0, pendingNoInterval},
		{"counter missing now", c(10, 5, 0), setupCounters{}, 0, ""},
		{"every accept became a client", c(100, 90, 0), c(300, 290, 0), 0, "ok"},
		{"handshakes not finished", c(100, 90, 0), c(3100, 400, 0), 2690, "ok"},
		{"maxclients rejections are not pending", c(0, 0, 0), c(50, 20, 30), 0, "ok"},
		{"late setups of the previous interval count as none pending", c(100, 60, 0), c(110, 100, 0), 0, "ok"},
		{"accept counter reset (eBPF reloaded)", c(100, 90, 0), c(5, 95, 0), 0, pendingReset},
		{"Valkey restarted", c(100, 90, 3), c(120, 4, 0), 0, pendingReset},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, why := handshakePending(tc.prev, tc.cur)
			if got != tc.want || why != tc.wantWhy {
				t.Errorf("handshakePending = %d, %q; want %d, %q", got, why, tc.want, tc.wantWhy)
			}
		})
	}
}

// setupSource reports cumulative accept and setup counters from a script.
type setupSource struct {
	i    int
	rows [][3]uint64
}

func (*setupSource) Name() string { return "setup" }

func (f *setupSource) Collect(_ context.Context, s *Sample) error {
	r := f.rows[f.i]
	f.i++
	s.Accepts = U64(r[0])
	s.Valkey = &Valkey{TotalConnectionsReceived: U64(r[1]), RejectedConnections: U64(r[2])}
	return nil
}

func TestSamplerDerivesHandshakePending(t *testing.T) {
	src := &setupSource{rows: [][3]uint64{{10, 10, 0}, {1010, 110, 0}, {1020, 1020, 0}}}
	sm := &Sampler{Target: "t", Sources: []Source{src}, Interval: time.Second}
	var got []*uint64
	var whys []string
	for range src.rows {
		s := sm.Once(context.Background())
		got = append(got, s.HandshakePending)
		whys = append(whys, s.Errors["handshake_pending"])
	}
	if got[0] != nil || whys[0] != pendingNoInterval {
		t.Errorf("first sample: handshake_pending = %v, errors.handshake_pending %q; want null with %q", got[0], whys[0], pendingNoInterval)
	}
	if whys[1] != "" || whys[2] != "" {
		t.Errorf("derived samples carry errors.handshake_pending %q, %q; want none", whys[1], whys[2])
	}
	if got[1] == nil || *got[1] != 900 {
		t.Errorf("second sample: handshake_pending = %v, want 900", got[1])
	}
	if got[2] == nil || *got[2] != 0 {
		t.Errorf("third sample: handshake_pending = %v, want 0", got[2])
	}
}

// promptSource is a fakeSource that declares itself Prompt.
type promptSource struct{ fakeSource }

func (*promptSource) Prompt() bool { return true }

// gatedSource blocks in Collect while its gate holds a channel.
type gatedSource struct {
	name string
	gate atomic.Pointer[chan struct{}]
}

func (g *gatedSource) Name() string { return g.name }
func (g *gatedSource) Collect(_ context.Context, s *Sample) error {
	if c := g.gate.Load(); c != nil {
		<-*c
	}
	s.Valkey = &Valkey{ConnectedClients: U64(1)}
	return nil
}

// TestSamplerWakePromptSample: a wake-up's sample is published once the
// prompt (kernel) sources answered, with a stalled Valkey source left out
// as late, although the deadline is an hour away; regular samples still
// wait for every source.
func TestSamplerWakePromptSample(t *testing.T) {
	vk := &gatedSource{name: "valkey"}
	wake := make(chan struct{}, 1)
	samples := make(chan *Sample, 10)
	sm := &Sampler{Target: "t:1", Interval: time.Hour, FastInterval: time.Hour, Deadline: time.Hour,
		Sources: []Source{
			&promptSource{fakeSource{name: "tcp", fill: func(s *Sample) { s.TCP = &TCP{ListenOverflows: U64(9)} }}},
			vk,
		},
		Wakes: []Wake{{C: wake}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go sm.Run(ctx, func(s *Sample) { samples <- s })
	first := <-samples
	if first.Valkey == nil || first.TCP == nil || len(first.Errors) != 0 {
		t.Fatalf("regular sample: valkey %v tcp %v errors %v, want both parts", first.Valkey, first.TCP, first.Errors)
	}
	stall := make(chan struct{})
	defer close(stall)
	vk.gate.Store(&stall)
	wake <- struct{}{}
	var s *Sample
	select {
	case s = <-samples:
	case <-ctx.Done():
		t.Fatal("the wake-up's sample waited for the stalled source")
	}
	if s.TCP == nil || *s.TCP.ListenOverflows != 9 {
		t.Errorf("wake-up sample lacks the prompt source's part: %+v", s.TCP)
	}
	if s.Valkey != nil || s.Errors["valkey"] != lateReason {
		t.Errorf("stalled source: valkey %v, errors.valkey %q, want nil and %q", s.Valkey, s.Errors["valkey"], lateReason)
	}
}

// deadlineSource is a prompt source that reports the deadline its context
// carried and, when slow is set, overruns it.
type deadlineSource struct {
	promptSource
	slow     bool
	deadline time.Time
	had      bool
}

func (d *deadlineSource) Collect(ctx context.Context, s *Sample) error {
	d.deadline, d.had = ctx.Deadline()
	if d.slow {
		time.Sleep(time.Until(d.deadline) + 5*time.Millisecond)
	}
	return d.promptSource.Collect(ctx, s)
}

// TestSamplerPromptOnlyDeadline: a sample of prompt sources only (no
// goroutine, no timer) still gives each source the deadline, and one that
// overruns it is recorded as timed out with its part discarded.
func TestSamplerPromptOnlyDeadline(t *testing.T) {
	first := &deadlineSource{promptSource: promptSource{fakeSource{name: "listenq", fill: func(s *Sample) { s.Listen = &Listen{Sockets: 1} }}}, slow: true}
	second := &deadlineSource{promptSource: promptSource{fakeSource{name: "tcp", fill: func(s *Sample) { s.TCP = &TCP{} }}}}
	sm := &Sampler{Target: "t:1", Port: 1, Interval: 100 * time.Millisecond, Deadline: 20 * time.Millisecond,
		Sources: []Source{first, second}}
	t0 := time.Now()
	s := sm.Once(context.Background())
	if !first.had || first.deadline.Before(t0) || first.deadline.After(t0.Add(time.Second)) {
		t.Errorf("prompt source's deadline %v (set %v), want one 20ms after %v", first.deadline, first.had, t0)
	}
	if s.Listen != nil || !strings.HasPrefix(s.Errors["listenq"], "timeout") {
		t.Errorf("overrunning source: part %+v, error %q; want none and a timeout", s.Listen, s.Errors["listenq"])
	}
	if s.TCP != nil || !strings.HasPrefix(s.Errors["tcp"], "timeout") {
		t.Errorf("source after the deadline: part %+v, error %q; want none and a timeout", s.TCP, s.Errors["tcp"])
	}
	// Nothing is left marked running: the next sample reads both again.
	first.slow = false
	s = sm.Once(context.Background())
	delete(s.Errors, "counts") // this fake listen part carries no counts
	if s.Listen == nil || s.TCP == nil || len(s.Errors) != 0 {
		t.Errorf("second sample: listen %+v, tcp %+v, errors %v; want both parts", s.Listen, s.TCP, s.Errors)
	}
}

// TestNoteCounts: a listen part without the background counts gets its
// reason in errors.counts; one with them, or a failed source, does not.
func TestNoteCounts(t *testing.T) {
	tests := []struct {
		name string
		s    Sample
		want bool
	}{
		{"counts there", Sample{Listen: &Listen{Abandoned: U64(0)}, SynRecv: U64(1), Established: U64(2), Errors: map[string]string{}}, false},
		{"first count running", Sample{Listen: &Listen{}, Errors: map[string]string{}}, true},
		{"abandoned only missing", Sample{Listen: &Listen{}, SynRecv: U64(1), Established: U64(2), Errors: map[string]string{}}, true},
		{"source failed", Sample{Listen: &Listen{}, Errors: map[string]string{"listenq": "unavailable: no listening socket on port 1"}}, false},
		{"no listen part", Sample{Errors: map[string]string{}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			noteCounts(&tc.s)
			if _, got := tc.s.Errors["counts"]; got != tc.want {
				t.Errorf("errors.counts set %v, want %v (errors %v)", got, tc.want, tc.s.Errors)
			}
		})
	}
}
