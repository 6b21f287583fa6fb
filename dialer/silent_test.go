package dialer

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/backoff"
)

// silentAt is t's silentDeadline for an attempt starting now, with
// the default DialTimeout's overall deadline.
func silentAt(d *Dialer, addr string) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.o.Now()
	return d.silentDeadline(d.target(addr), now, now.Add(DefaultDialTimeout))
}

// TestSilentDeadlineOnlyInEpisodesOfTimeouts: an attempt gets the cut
// below the kernel's SYN retransmit only in an episode of timeouts (or
// after one, until a healthy connection resets the failures); never
// outside an episode, and never in an episode begun — or turned — by a
// close, a reset or a refusal: the kill, restart and failover paths
// keep their attempts uncut.
func TestSilentDeadlineOnlyInEpisodesOfTimeouts(t *testing.T) {
	const addr = "10.0.0.5:6379"
	d, clk := newClocked(t, Options{FleetSize: 3000, BreakerThreshold: -1})
	if dl := silentAt(d, addr); dl != 0 {
		t.Errorf("first connect: cut at %s, want none", dl)
	}
	connectHealthy(t, d, clk, addr).Lost(errTimeout{})
	if dl := silentAt(d, addr); dl != DefaultSilentCut {
		t.Errorf("episode of timeouts: cut at %s, want %s", dl, DefaultSilentCut)
	}
	// A failed attempt (a timed-out connect) inside it keeps it soft, and
	// once the episode is over its failures still say "unreachable".
	r, err := d.Reserve(addr)
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(r.Wait + DefaultSilentCut)
	_ = r.Dialed(DefaultSilentCut, os.ErrDeadlineExceeded)
	clk.advance(time.Minute)
	if d.inEpisode(d.target(addr), clk.Now()) {
		t.Fatal("still in the episode a minute later")
	}
	if dl := silentAt(d, addr); dl != DefaultSilentCut {
		t.Errorf("after the episode of timeouts, failures not reset: cut at %s, want %s", dl, DefaultSilentCut)
	}
	// A healthy connection resets the failures: outside an episode again.
	connectHealthy(t, d, clk, addr)
	if dl := silentAt(d, addr); dl != 0 {
		t.Errorf("after a healthy connection: cut at %s, want none", dl)
	}
	for _, tt := range []struct {
		name string
		lose func(r *Reservation)
	}{
		{"kill (EOF)", func(r *Reservation) { r.Lost(io.EOF) }},
		{"reset", func(r *Reservation) { r.Lost(syscall.ECONNRESET) }},
		{"timeout, then a close in the same episode", func(r *Reservation) {
			r.Lost(errTimeout{})
			r2, err := d.Reserve(addr)
			if err != nil {
				t.Fatal(err)
			}
			clk.advance(r2.Wait)
			_ = r2.Dialed(time.Millisecond, nil)
			r2.Overloaded(io.EOF)
		}},
	} {
		clk.advance(time.Minute)
		connectHealthy(t, d, clk, addr) // failures reset
		clk.advance(time.Minute)
		tt.lose(connectHealthy(t, d, clk, addr))
		if dl := silentAt(d, addr); dl != 0 {
			t.Errorf("%s: cut at %s, want none", tt.name, dl)
		}
	}
	// A restart: the connection closed, then the redial refused.
	clk.advance(time.Minute)
	connectHealthy(t, d, clk, addr)
	clk.advance(time.Minute)
	connectHealthy(t, d, clk, addr).Lost(io.EOF)
	r, err = d.Reserve(addr)
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(r.Wait)
	_ = r.Dialed(time.Millisecond, syscall.ECONNREFUSED)
	if dl := silentAt(d, addr); dl != 0 {
		t.Errorf("restart (refused): cut at %s, want none", dl)
	}
}

// TestSilentDeadlineBounds: no cut for a path whose connects take too
// long for it (the SYN-ACK could come after the cut), none when the
// dial's overall deadline comes first, none without episodes
// (ReconnectWindow -1); and the cut is below the kernel's retransmit.
func TestSilentDeadlineBounds(t *testing.T) {
	if DefaultSilentCut >= kernelSYNRTO || DefaultSilentCut <= synFloor+synAssumedRTT+4*synAssumedRTT/2 {
		t.Fatalf("DefaultSilentCut %s: want below the kernel's %s and above a never-observed path's %s", DefaultSilentCut, kernelSYNRTO, synFloor+synAssumedRTT+4*synAssumedRTT/2)
	}
	const addr = "10.0.0.5:6379"
	for _, tt := range []struct {
		took time.Duration
		want time.Duration
	}{
		{time.Millisecond, DefaultSilentCut},
		{100 * time.Millisecond, DefaultSilentCut}, // 200 + 100 + 4 × 50 = 500 ms
		{300 * time.Millisecond, 0},                // 200 + 300 + 4 × 150 > 800 ms
		{900 * time.Millisecond, 0},
	} {
		d, clk := newClocked(t, Options{BreakerThreshold: -1})
		r, err := d.Reserve(addr)
		if err != nil {
			t.Fatal(err)
		}
		clk.advance(r.Wait + tt.took)
		_ = r.Dialed(tt.took, nil)
		r.Handshake()
		r.Stable()
		r.Lost(errTimeout{})
		if dl := silentAt(d, addr); dl != tt.want {
			t.Errorf("connects of %s: cut at %s, want %s", tt.took, dl, tt.want)
		}
	}
	d, clk := newClocked(t, Options{BreakerThreshold: -1})
	connectHealthy(t, d, clk, addr).Lost(errTimeout{})
	d.mu.Lock()
	tg := d.target(addr)
	now := clk.Now()
	if dl := d.silentDeadline(tg, now, now.Add(DefaultSilentCut)); dl != 0 {
		t.Errorf("overall deadline at the cut: cut at %s, want none (DialTimeout decides)", dl)
	}
	if dl := d.silentDeadline(tg, now, now.Add(2*time.Second)); dl != DefaultSilentCut {
		t.Errorf("overall deadline in 2 s: cut at %s, want %s", dl, DefaultSilentCut)
	}
	if dl := d.silentDeadline(tg, now, time.Time{}); dl != 0 {
		t.Errorf("no overall deadline: cut at %s, want none (nothing to hold the dial to)", dl)
	}
	d.mu.Unlock()
	d, clk = newClocked(t, Options{BreakerThreshold: -1, ReconnectWindow: -1})
	connectHealthy(t, d, clk, addr).Lost(errTimeout{})
	if dl := silentAt(d, addr); dl != 0 {
		t.Errorf("ReconnectWindow -1: cut at %s, want none", dl)
	}
	d, clk = newClocked(t, Options{BreakerThreshold: -1, SilentCut: -1})
	connectHealthy(t, d, clk, addr).Lost(errTimeout{})
	if dl := silentAt(d, addr); dl != 0 {
		t.Errorf("SilentCut -1: cut at %s, want none", dl)
	}
	d, clk = newClocked(t, Options{BreakerThreshold: -1, SilentCut: 300 * time.Millisecond})
	connectHealthy(t, d, clk, addr).Lost(errTimeout{})
	if dl := silentAt(d, addr); dl != 300*time.Millisecond {
		t.Errorf("SilentCut 300ms: cut at %s, want 300ms", dl)
	}
}

// TestSilentCutDialContext: in an episode of timeouts, DialContext
// cuts an attempt that gets no answer (one network dial, counted in
// SilentCuts) and fails it at DialTimeout, as the uncut attempt would
// have failed; the failure keeps the episode one of timeouts. In an
// episode begun by a close the same silent target's attempt is not cut.
func TestSilentCutDialContext(t *testing.T) {
	const addr = "10.0.0.5:6379"
	bh := &blackholeDial{}
	// A frozen clock keeps the episode going; the cut runs on real timers.
	// DialTimeout well above the cut (800 ms), so that a cut timer a
	// loaded machine runs late still comes before the dial's deadline.
	frozen := func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }
	opts := Options{Dial: bh.dial, Rate: -1, FirstConnectWindow: -1, BreakerThreshold: -1, DialTimeout: 3 * time.Second,
		ReconnectWindow: 20 * time.Millisecond, Backoff: backoff.Immediate{}, Now: frozen, StableAfter: -1}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.(*Conn).MarkHandshake() // stable at once (StableAfter -1)
	c.(*Conn).lostStable(errTimeout{}, 0)
	_ = c.Close()
	bh.mu.Lock()
	bh.n, bh.calls = 100, 0
	bh.mu.Unlock()
	_, err = d.DialContext(context.Background(), "tcp", addr)
	if !errors.Is(err, context.DeadlineExceeded) || !isTimeout(err) {
		t.Fatalf("silent target in an episode of timeouts: %v, want DialTimeout's deadline", err)
	}
	st := d.Stats(addr)
	if st.SilentCuts != 1 || st.DialFailures != 1 || st.AbandonedDials != 0 {
		t.Errorf("stats %+v: want one silent cut, one failed dial, no abandon", st)
	}
	bh.mu.Lock()
	calls := bh.calls
	bh.mu.Unlock()
	if calls != 1 {
		t.Errorf("%d network dials, want 1 (the cut is not redialled inside the call)", calls)
	}
	d.mu.Lock()
	soft := d.target(addr).soft
	d.mu.Unlock()
	if !soft {
		t.Error("the cut turned the episode of timeouts into one of closes")
	}

	// An episode begun by a close (a kill): the attempt runs uncut.
	d2 := dialIntoSilence(t, bh, opts, addr)
	if st := d2.Stats(addr); st.SilentCuts != 0 || st.DialFailures != 1 {
		t.Errorf("episode of closes: stats %+v, want no silent cut and one failed dial", st)
	}
}
