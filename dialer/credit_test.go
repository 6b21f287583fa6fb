package dialer

import (
	"errors"
	"io"
	"syscall"
	"testing"
	"time"
)

// creditOptions: the default-like token bucket (20/s, burst 10) and a
// window of 1 s (a fleet of 3,000 at 3,000/s), without a ramp.
func creditOptions() Options {
	return Options{Rate: 20, Burst: 10, FleetSize: 3000, BreakerThreshold: -1}
}

// fillPool reserves n connections at once (a pool growing), then
// connects them all once the last one is due; it returns them and the
// longest wait.
func fillPool(t *testing.T, d *Dialer, clk *fakeClock, addr string, n int) ([]*Reservation, time.Duration) {
	t.Helper()
	pool, longest := reserveAll(t, d, addr, n)
	clk.advance(longest)
	for _, r := range pool {
		connectNow(t, r)
	}
	return pool, longest
}

// connectNow completes r now: it connects fast, handshakes and becomes
// stable.
func connectNow(t *testing.T, r *Reservation) {
	t.Helper()
	if err := r.Dialed(time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	r.Handshake()
	r.Stable()
}

// reserveAll makes n Reserves at the same instant and returns them and
// their longest wait.
func reserveAll(t *testing.T, d *Dialer, addr string, n int) ([]*Reservation, time.Duration) {
	t.Helper()
	var rs []*Reservation
	var longest time.Duration
	for range n {
		r, err := d.Reserve(addr)
		if err != nil {
			t.Fatal(err)
		}
		longest = max(longest, r.Wait)
		rs = append(rs, r)
	}
	return rs, longest
}

// TestCreditsRedialLostPool: a process whose pool of 100 connections is
// closed at once redials all 100 within the reconnect window, not at the
// token bucket's 20/s (which would take 4.5 s), and leaves the bucket
// for growth.
func TestCreditsRedialLostPool(t *testing.T) {
	const addr, pool = "10.0.0.1:6379", 100
	d, clk := newClocked(t, creditOptions())
	conns, longest := fillPool(t, d, clk, addr, pool)
	// Growth: 90 connections past the burst of 10 at 20/s.
	if want := time.Duration(pool-10-1) * time.Second / 20; longest < want {
		t.Fatalf("filling the pool: longest wait %s, want the rate limit's %s", longest, want)
	}
	clk.advance(10 * time.Second) // the bucket is full again
	for _, r := range conns {
		r.Lost(io.EOF)
	}
	w := d.Stats(addr).Window
	redials, longest := reserveAll(t, d, addr, pool)
	if longest >= w {
		t.Errorf("redialling the lost pool: longest wait %s, want within the window %s", longest, w)
	}
	if st := d.Stats(addr); st.CreditDials != pool {
		t.Errorf("CreditDials %d, want %d", st.CreditDials, pool)
	}
	// The redials took no tokens: growing the pool still finds the
	// bucket as it was (full), and only it (TestCreditsFailedRedialGivesBack:
	// a dial beyond the credits waits for a token).
	if tokens := d.targets[addr].limiter.TokensAt(clk.now); tokens != 10 {
		t.Errorf("bucket after the redials: %.1f tokens, want the full burst of 10", tokens)
	}
	clk.advance(w)
	for _, r := range redials {
		connectNow(t, r)
	}
}

// TestCreditsExpireWithEpisode: credits not used inside the episode of
// the losses that gave them are gone after it.
func TestCreditsExpireWithEpisode(t *testing.T) {
	const addr, pool = "10.0.0.1:6379", 30
	d, clk := newClocked(t, creditOptions())
	conns, _ := fillPool(t, d, clk, addr, pool)
	clk.advance(10 * time.Second)
	for _, r := range conns {
		r.Lost(io.EOF)
	}
	clk.advance(d.Stats(addr).Window + time.Millisecond) // the episode is over (no ramp)
	_, longest := reserveAll(t, d, addr, pool)
	if want := time.Duration(pool-10) * time.Second / 20; longest < want {
		t.Errorf("after the episode: longest wait %s, want the rate limit's %s", longest, want)
	}
	if st := d.Stats(addr); st.CreditDials != 0 {
		t.Errorf("CreditDials %d after the episode, want 0", st.CreditDials)
	}
	// A new episode starts a new count: one loss, one credit.
	clk.advance(time.Hour)
	c := connectHealthy(t, d, clk, addr)
	clk.advance(time.Hour)
	c.Lost(io.EOF)
	_, _ = reserveAll(t, d, addr, 3)
	if st := d.Stats(addr); st.CreditDials != 1 {
		t.Errorf("CreditDials %d after a new episode with one loss, want 1", st.CreditDials)
	}
}

// TestCreditsFailedRedialGivesBack: a redial that fails before the
// server admitted it (refused, timed out, rejected) gives its credit back,
// since the connection it was to replace is still missing; a redial that
// connects and is lost again gives one too. Never more credits than
// connections lost and not replaced.
func TestCreditsFailedRedialGivesBack(t *testing.T) {
	const addr = "10.0.0.1:6379"
	o := creditOptions()
	o.Rate, o.Burst = 0.001, 3 // no token after the pool's three
	d, clk := newClocked(t, o)
	conns, _ := fillPool(t, d, clk, addr, 3)
	conns[0].Lost(io.EOF)
	conns[1].Lost(io.EOF)
	failures := []error{syscall.ECONNREFUSED, errTimeout{}, nil}
	for i, ferr := range failures {
		r, err := d.Reserve(addr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Wait >= 100*time.Second { // a token: 1,000 s
			t.Fatalf("redial %d waited %s: want a credit, not a token", i, r.Wait)
		}
		// Reported at once: the accounting is the point here, and a
		// redial failing after its episode's end would start a new
		// episode (and a new count).
		if ferr != nil {
			_ = r.Dialed(time.Millisecond, ferr)
			continue
		}
		// Connects, then the server rejects it at maxclients.
		if err := r.Dialed(time.Millisecond, nil); err != nil {
			t.Fatal(err)
		}
		r.Overloaded(errors.New("-ERR max number of clients reached"))
	}
	// Two connections lost, none replaced: two credits, a third dial
	// takes a token (none left).
	_, longest := reserveAll(t, d, addr, 3)
	if st := d.Stats(addr); st.CreditDials != len(failures)+2 {
		t.Errorf("CreditDials %d, want %d", st.CreditDials, len(failures)+2)
	}
	if longest < 100*time.Second {
		t.Errorf("a third redial for two lost connections waited %s: want a token's wait", longest)
	}
}
