package dialer

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stormguard/stormguard/backoff"
)

// observe makes n attempts to addr that connect after took, failing the
// test if one of them would have been cut off, and returns the deadline
// the next attempt gets.
func observe(t *testing.T, d *Dialer, clk *fakeClock, addr string, took time.Duration, n int) time.Duration {
	t.Helper()
	for range n {
		r, err := d.Reserve(addr)
		if err != nil {
			t.Fatal(err)
		}
		clk.advance(r.Wait)
		if dl := d.Stats(addr).SYNDeadline; dl > 0 && dl <= took {
			t.Fatalf("a %s connect got a deadline of %s: cut off", took, dl)
		}
		clk.advance(took)
		_ = r.Dialed(took, nil)
		r.Close()
	}
	return d.Stats(addr).SYNDeadline
}

// TestSYNDeadlineAdapts: the deadline follows the target's connect
// times (200 ms + srtt + 4 × rttvar), starts at 500 ms when nothing was
// observed, and a path whose connects take longer than the kernel's SYN
// retransmit allows gets none: no attempt that would have connected is
// cut off.
func TestSYNDeadlineAdapts(t *testing.T) {
	const addr = "10.0.0.5:6379"
	d, _ := newClocked(t, Options{SYNDeadline: time.Second})
	if r, _ := d.Reserve(addr); r.Deadline != 0 || d.Stats(addr).SYNDeadline != 500*time.Millisecond {
		t.Errorf("outside an episode: deadline %s, want none (learned: %s, want 500ms)", r.Deadline, d.Stats(addr).SYNDeadline)
	}
	for _, tt := range []struct {
		rtt      time.Duration
		min, max time.Duration // 0, 0: no deadline
	}{
		{50 * time.Microsecond, 200 * time.Millisecond, 201 * time.Millisecond},
		{20 * time.Millisecond, 220 * time.Millisecond, 300 * time.Millisecond},
		{150 * time.Millisecond, 350 * time.Millisecond, 360 * time.Millisecond},
		{300 * time.Millisecond, 500 * time.Millisecond, 510 * time.Millisecond}, // none at first: 200 + 300 + 4 × 150 > 1 s
		{900 * time.Millisecond, 0, 0},
		{1500 * time.Millisecond, 0, 0},
	} {
		d, clk := newClocked(t, Options{SYNDeadline: time.Second})
		// The first connect is the first sample (rttvar = rtt/2).
		r, _ := d.Reserve(addr)
		_ = r.Dialed(tt.rtt, nil)
		r.Close()
		got := observe(t, d, clk, addr, tt.rtt, 20)
		if got < tt.min || got > tt.max {
			t.Errorf("connects of %s: deadline %s, want within [%s, %s]", tt.rtt, got, tt.min, tt.max)
		}
	}
	// A long path never observed: the first attempt is cut at 500 ms,
	// the redial is not, and once its connect is seen no attempt is cut.
	d, clk := newClocked(t, Options{SYNDeadline: time.Second})
	d.ReportOverload(addr, io.EOF) // an episode, nothing observed
	r, _ := d.Reserve(addr)
	clk.advance(r.Wait)
	if r.Deadline != 500*time.Millisecond {
		t.Fatalf("first attempt: deadline %s, want 500ms", r.Deadline)
	}
	clk.advance(r.Deadline)
	clk.advance(r.Abandon())
	if r.Deadline != 0 {
		t.Fatalf("the redial after an abandon got a deadline of %s", r.Deadline)
	}
	clk.advance(700 * time.Millisecond)
	_ = r.Dialed(700*time.Millisecond, nil)
	if got := observe(t, d, clk, addr, 700*time.Millisecond, 5); got != 0 {
		t.Errorf("a 700 ms path: deadline %s after its connects were seen, want none", got)
	}
	if st := d.Stats(addr); st.AbandonedDials != 1 {
		t.Errorf("AbandonedDials %d, want 1", st.AbandonedDials)
	}
	// Karn: a connect as slow as a retransmitted SYN is no sample.
	d, clk = newClocked(t, Options{SYNDeadline: time.Second})
	observe(t, d, clk, addr, time.Millisecond, 5)
	r, _ = d.Reserve(addr)
	_ = r.Dialed(1100*time.Millisecond, nil)
	r.Close()
	if got := d.Stats(addr).SYNDeadline; got > 210*time.Millisecond {
		t.Errorf("after a retransmitted connect: deadline %s, want unchanged (~201ms)", got)
	}
	// Off: -1, and by default.
	for _, o := range []Options{{SYNDeadline: -1}, {}} {
		d, clk = newClocked(t, o)
		if got := observe(t, d, clk, addr, time.Millisecond, 3); got != 0 {
			t.Errorf("SYNDeadline %s: deadline %s", o.SYNDeadline, got)
		}
	}
}

// TestSYNDeadlineAbandonPaced: an abandoned attempt is congestion (the
// learned rate is cut once per dial, as for a slow connect), and its
// redial lands in what is left of the episode's window but no later than
// the kernel's SYN retransmit (1 s after the attempt started), spread,
// not at once. DialTimeout bounds the attempts together.
func TestSYNDeadlineAbandonPaced(t *testing.T) {
	const addr = "10.0.0.5:6379"
	d, clk := newClocked(t, Options{SYNDeadline: time.Second, FleetSize: 9000, BreakerThreshold: -1, Backoff: backoff.Immediate{}, DialTimeout: 2 * time.Second}) // 3 s window
	observe(t, d, clk, addr, time.Millisecond, 3)
	connectHealthy(t, d, clk, addr).Lost(io.EOF)
	var lo, hi time.Duration = time.Hour, 0
	for range 200 {
		r, _ := d.Reserve(addr)
		if r.Deadline == 0 {
			t.Fatal("no deadline in a kill episode")
		}
		dl := r.Deadline
		dc := *clk
		dc.advance(r.Wait + dl)
		d.o.Now = dc.Now
		w := r.Abandon()
		d.o.Now = clk.Now
		lo, hi = min(lo, w), max(hi, w)
		if w > time.Second-dl {
			t.Fatalf("redial %s after the abandon: later than the kernel's retransmit", w)
		}
		r.Close()
		d.mu.Lock()
		d.targets[addr].abandons = 0 // the next Reserve is another instance's first attempt
		d.mu.Unlock()
	}
	if hi-lo < 300*time.Millisecond {
		t.Errorf("redials within [%s, %s]: not spread", lo, hi)
	}
	if st := d.Stats(addr); st.AcceptRate >= 3000 || st.AbandonedDials != 200 {
		t.Errorf("after 200 abandons: rate %g (want cut), AbandonedDials %d", st.AcceptRate, st.AbandonedDials)
	}
	// One dial is one congestion event: its abandon and its redial's
	// timeout cut once.
	d, clk = newClocked(t, Options{SYNDeadline: time.Second, BreakerThreshold: -1, Backoff: backoff.Immediate{}, DialTimeout: 2 * time.Second})
	observe(t, d, clk, addr, time.Millisecond, 3)
	connectHealthy(t, d, clk, addr).Lost(io.EOF)
	r, _ := d.Reserve(addr)
	if r.Deadline == 0 {
		t.Fatal("no deadline in the episode")
	}
	clk.advance(r.Wait + r.Deadline)
	clk.advance(r.Abandon())
	rate := d.Stats(addr).AcceptRate
	clk.advance(time.Second)
	_ = r.Dialed(time.Second, errTimeout{})
	if got := d.Stats(addr).AcceptRate; got != rate || rate >= 3000 {
		t.Errorf("rate %g after the abandon, %g after the same dial's timeout: want one cut", rate, got)
	}
	// A wait past DialTimeout is 0, and the last attempt's deadline would
	// end after DialTimeout: none.
	d, clk = newClocked(t, Options{BreakerThreshold: -1, DialTimeout: 300 * time.Millisecond, SYNDeadline: 250 * time.Millisecond})
	observe(t, d, clk, addr, time.Millisecond, 3)
	connectHealthy(t, d, clk, addr).Lost(io.EOF)
	r, _ = d.Reserve(addr)
	clk.advance(r.Wait + r.Deadline)
	if w := r.Abandon(); w > 100*time.Millisecond || r.Deadline != 0 {
		t.Errorf("DialTimeout 300ms: redial after %s with deadline %s", w, r.Deadline)
	}
}

// TestSYNDeadlineOnlyInEpisodes: attempts are cut only inside a
// reconnect episode begun by a close or reset — not outside one (first
// connects, a pool growing), and not in an episode of timeouts alone (a
// blip: the SYNs are lost to the outage, not to a full accept queue).
func TestSYNDeadlineOnlyInEpisodes(t *testing.T) {
	const addr = "10.0.0.5:6379"
	d, clk := newClocked(t, Options{SYNDeadline: time.Second, BreakerThreshold: -1})
	observe(t, d, clk, addr, time.Millisecond, 3)
	if r, _ := d.Reserve(addr); r.Deadline != 0 {
		t.Errorf("outside an episode: deadline %s, want none", r.Deadline)
	}
	connectHealthy(t, d, clk, addr).Lost(errTimeout{})
	if r, _ := d.Reserve(addr); r.Deadline != 0 {
		t.Errorf("timeout episode: deadline %s, want none", r.Deadline)
	}
	connectHealthy(t, d, clk, addr).Lost(io.EOF) // a close: not soft
	if r, _ := d.Reserve(addr); r.Deadline == 0 {
		t.Error("after a close: no deadline")
	}
}

// blackholeDial answers its first n attempts never (until their context
// ends) and every later one at once, and counts them.
type blackholeDial struct {
	mu       sync.Mutex
	n, calls int
}

func (b *blackholeDial) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	b.mu.Lock()
	b.calls++
	drop := b.calls <= b.n
	b.mu.Unlock()
	if drop {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	c, s := net.Pipe()
	go func() { _ = s.Close() }()
	return c, nil
}

// TestSYNDeadlineDialContext: DialContext abandons an attempt whose SYN
// went unanswered past the deadline and redials within the same call,
// which succeeds; a target that answers nothing fails at DialTimeout.
func TestSYNDeadlineDialContext(t *testing.T) {
	const addr = "10.0.0.5:6379"
	bh := &blackholeDial{}
	// A frozen clock: the episode that lose begins never ends (the waits
	// and the deadlines run on real timers, the episode on Now).
	frozen := func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }
	d, err := New(Options{SYNDeadline: time.Second, Dial: bh.dial, Rate: -1, FirstConnectWindow: -1, BreakerThreshold: -1, DialTimeout: 3 * time.Second,
		ReconnectWindow: 20 * time.Millisecond, Backoff: backoff.Immediate{}, Now: frozen})
	if err != nil {
		t.Fatal(err)
	}
	lose(t, d, addr) // observed: ~0; an episode begins
	bh.mu.Lock()
	bh.n, bh.calls = 1, 0
	bh.mu.Unlock()
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("the redial after the abandon: %v", err)
	}
	_ = c.Close()
	if st := d.Stats(addr); st.AbandonedDials != 1 || st.Dials != 3 || st.DialFailures != 0 {
		t.Errorf("stats %+v: want 1 abandoned of 3 dials, no failure", st)
	}
	d2 := dialIntoSilence(t, bh, Options{SYNDeadline: time.Second, Dial: bh.dial, Rate: -1, FirstConnectWindow: -1, BreakerThreshold: -1,
		DialTimeout: 1500 * time.Millisecond, ReconnectWindow: 20 * time.Millisecond, Backoff: backoff.Immediate{}, Now: frozen}, addr)
	if st := d2.Stats(addr); st.AbandonedDials != 1 || st.DialFailures != 1 {
		t.Errorf("stats %+v: want one abandon, then the uncut attempt failing at DialTimeout", st)
	}
}

// dialIntoSilence makes a Dialer with opts (whose Dial is bh's), starts
// a reconnect episode of closes (lose), and then dials a target that
// answers nothing: the dial must fail at DialTimeout's deadline. The
// caller checks the Stats of how it got there.
func dialIntoSilence(t *testing.T, bh *blackholeDial, opts Options, addr string) *Dialer {
	t.Helper()
	bh.mu.Lock()
	bh.n, bh.calls = 0, 0
	bh.mu.Unlock()
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	lose(t, d, addr)
	bh.mu.Lock()
	bh.n, bh.calls = 100, 0
	bh.mu.Unlock()
	if _, err := d.DialContext(context.Background(), "tcp", addr); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a target that answers nothing after a close: %v, want DialTimeout's deadline", err)
	}
	return d
}

// lose dials addr through d and reads EOF before any reply: overload,
// which starts a reconnect episode.
func lose(t *testing.T, d *Dialer, addr string) {
	t.Helper()
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read from a closed pipe succeeded")
	}
	_ = c.Close()
	if d.Stats(addr).Overloads != 1 {
		t.Fatalf("EOF before the handshake: %+v, want one overload", d.Stats(addr))
	}
}

// TestCutterWaitsOutStalls: a deadline timer that fires late (the
// process was starved, a SYN-ACK may be waiting to be noticed) does not
// cut; one that fires on time does.
func TestCutterWaitsOutStalls(t *testing.T) {
	var canceled atomic.Bool
	orig := time.Now().Add(-100 * time.Millisecond)
	c := &cutter{cancel: func() { canceled.Store(true) }, due: orig}
	c.timer = time.AfterFunc(time.Hour, c.fire)
	defer c.stop()
	c.fire() // 100 ms late
	if c.cut.Load() || canceled.Load() {
		t.Fatal("cut by a timer that fired 100 ms late")
	}
	c.mu.Lock()
	rearmed := c.due.After(orig.Add(100 * time.Millisecond))
	c.due = time.Now().Add(time.Hour) // the re-armed timer, on time
	c.mu.Unlock()
	if !rearmed {
		t.Error("the late timer was not re-armed later")
	}
	c.fire()
	if !c.cut.Load() || !canceled.Load() {
		t.Fatal("a timer on time did not cut")
	}
}
