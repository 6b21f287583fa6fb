package dialer

import (
	"errors"
	"io"
	"testing"
	"time"
)

// TestLossDatedBackToClose: a loss the kernel had ago before this
// process read it starts the episode ago earlier (at most a quarter of
// the episode), so a late reader draws from what is left of the window
// and the fleet still ends with it; a loss inside an episode under
// way, a reset or a timeout (ago 0) moves nothing.
func TestLossDatedBackToClose(t *testing.T) {
	const addr = "10.0.0.5:6379"
	// FleetSize 6,000 at 3,000/s, no ramp: a 2 s window and episode.
	const window = 2 * time.Second
	for _, tt := range []struct {
		name  string
		young bool          // lost after its handshake but before StableAfter
		ago   time.Duration // when the kernel had the close, before the notice
		// lag: the Stats.NoticeLag and the part of the window gone.
		lag time.Duration
	}{
		{"noticed at once", false, 0, 0},
		{"a negative ago is none", false, -time.Second, 0},
		{"noticed 400ms late", false, 400 * time.Millisecond, 400 * time.Millisecond},
		{"young connection noticed 400ms late", true, 400 * time.Millisecond, 400 * time.Millisecond},
		{"noticed 5s late: at most a quarter of the episode", false, 5 * time.Second, window / 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, clk := newClocked(t, Options{FleetSize: 6000, BreakerThreshold: -1})
			r, err := d.Reserve(addr)
			if err != nil {
				t.Fatal(err)
			}
			clk.advance(r.Wait)
			_ = r.Dialed(time.Millisecond, nil)
			r.Handshake()
			if !tt.young {
				r.Stable()
			}
			r.LostAgo(io.EOF, tt.ago)
			if got := d.Stats(addr).NoticeLag; got != tt.lag {
				t.Errorf("NoticeLag = %s, want %s", got, tt.lag)
			}
			left := window - tt.lag
			lo, hi := spreadAfterLoss(t, d, addr, 400)
			if hi >= left || hi < left*9/10 || lo > left/10 {
				t.Errorf("redials wait [%s, %s], want spread over the %s left of the window", lo, hi, left)
			}
		})
	}

	t.Run("a late notice inside an episode moves nothing", func(t *testing.T) {
		d, clk := newClocked(t, Options{FleetSize: 6000, BreakerThreshold: -1})
		a := connectHealthy(t, d, clk, addr)
		b := connectHealthy(t, d, clk, addr)
		a.LostAgo(io.EOF, 0)
		clk.advance(100 * time.Millisecond)
		b.LostAgo(io.EOF, 800*time.Millisecond)
		if got := d.Stats(addr).NoticeLag; got != 0 {
			t.Errorf("NoticeLag = %s after a second loss in the episode, want the first's 0", got)
		}
		_, hi := spreadAfterLoss(t, d, addr, 400)
		if left := window - 100*time.Millisecond; hi >= left || hi < left*9/10 {
			t.Errorf("redials wait up to %s, want up to the %s left of the first loss's window", hi, left)
		}
	})

	t.Run("a timeout is not dated back", func(t *testing.T) {
		d, clk := newClocked(t, Options{FleetSize: 6000, BreakerThreshold: -1})
		r := connectHealthy(t, d, clk, addr)
		r.Lost(errTimeout{})
		c := r.c
		if got := d.Stats(addr).NoticeLag; got != 0 {
			t.Errorf("NoticeLag = %s after a timeout, want 0", got)
		}
		if c.noticedLate(errTimeout{}) != 0 || c.noticedLate(errors.New("connection reset by peer")) != 0 {
			t.Error("noticedLate read the kernel for an error that is not EOF")
		}
	})
}
