package dialer

import (
	"fmt"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/backoff"
)

// outageRun is what one client did in a refusing outage: the offsets
// (from the server's going down) of its attempts while refused, and of
// its connect once the server was back.
type outageRun struct {
	refused []time.Duration
	back    time.Duration
	window  time.Duration // the target's window after the first refusal
}

// refusedOutage drives one client (d, on clk) through a server that
// closes its connection and refuses every connect for down, then admits
// it again, and makes the reconnect healthy. Every attempt dials at the
// moment its Reservation's Wait ends.
func refusedOutage(t *testing.T, d *Dialer, clk *fakeClock, addr string, down time.Duration) outageRun {
	t.Helper()
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	connectHealthy(t, d, clk, addr).Lost(io.EOF)
	start := clk.now
	var run outageRun
	for range 10000 {
		r, err := d.Reserve(addr)
		if err != nil {
			t.Fatalf("reserve after %s: %v", clk.now.Sub(start), err)
		}
		clk.advance(r.Wait)
		at := clk.now.Sub(start)
		if at < down {
			_ = r.Dialed(time.Millisecond, refused)
			if run.refused = append(run.refused, at); len(run.refused) == 1 {
				run.window = d.Stats(addr).Window
			}
			continue
		}
		if err := r.Dialed(time.Millisecond, nil); err != nil {
			t.Fatal(err)
		}
		r.Handshake()
		r.Stable()
		run.back = at
		return run
	}
	t.Fatalf("not back after 10,000 attempts")
	return run
}

// TestRefusedBackoffBoundedByOutage: a client refused again and again
// while the server restarts is back at most half the outage (or two
// windows, if longer) after the server is, whatever the backoff policy's
// exponential delay has grown to; it never retries sooner than one
// window after a refusal; and in a long outage its attempts still thin
// out towards the policy's cap. 300 clients at 3,000/s: a 0.1 s window
// (67 ms after a healed outage raised the rate to 4,500/s),
// so a 1 s outage refuses each client about ten times (the lab's 2,000
// clients behind a 0.13 s window; docs/benchmarks.md 8n), and the
// default policy (full jitter from 100 ms, doubling, up to 10 s) alone
// would send some clients back seconds after the server.
func TestRefusedBackoffBoundedByOutage(t *testing.T) {
	const addr = "10.0.0.5:6379"
	tests := []struct {
		name   string
		before time.Duration // an earlier outage, healed (Stable) before this one
		down   time.Duration
		// maxLate: every client back within this of the server's return.
		maxLate time.Duration
		// maxAttempts: no client tries the down server more often.
		maxAttempts int
	}{
		{name: "1 s outage", down: time.Second, maxLate: 500 * time.Millisecond, maxAttempts: 12},
		{name: "3 s outage", down: 3 * time.Second, maxLate: 1500 * time.Millisecond, maxAttempts: 20},
		// After 20 s of refusals the bound passes the 10 s cap: from then
		// on the policy alone paces the client (a mean 5 s per attempt).
		{name: "60 s outage", down: time.Minute, maxLate: 10 * time.Second, maxAttempts: 40},
		// The first outage's refusals do not loosen the second's bound.
		{name: "1 s outage after a healed 60 s one", before: time.Minute, down: time.Second, maxLate: 500 * time.Millisecond, maxAttempts: 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var late time.Duration
			most := 0
			for seed := range uint64(100) {
				d, clk := newClocked(t, Options{FleetSize: 300, BreakerThreshold: 3})
				d.o.Rand = rand.New(rand.NewPCG(seed, 7))
				if tc.before > 0 {
					refusedOutage(t, d, clk, addr, tc.before)
					clk.advance(time.Minute)
				}
				run := refusedOutage(t, d, clk, addr, tc.down)
				if len(run.refused) == 0 {
					t.Fatalf("seed %d: never refused", seed)
				}
				prev := run.refused[0]
				for _, at := range append(run.refused[1:], run.back) {
					if at-prev < run.window-time.Millisecond {
						t.Fatalf("seed %d: attempt %s after the refusal at %s, sooner than one window (%s)", seed, at-prev, prev, run.window)
					}
					prev = at
				}
				if b := d.Stats(addr).Breaker; b != "closed" {
					t.Fatalf("seed %d: breaker %s after refusals only", seed, b)
				}
				late, most = max(late, run.back-tc.down), max(most, len(run.refused))
			}
			if late > tc.maxLate {
				t.Errorf("the last of 100 clients back %s after the server, want at most %s", late, tc.maxLate)
			}
			if most > tc.maxAttempts {
				t.Errorf("a client tried the down server %d times, want at most %d", most, tc.maxAttempts)
			}
			t.Logf("last client back %s after the server; most attempts %d", late, most)
		})
	}
}

// TestRefusedBoundTwoWindows: with a policy that would wait 10 s after
// every failure, a client refused again and again retries exactly at the
// bound: two restarted windows after each refusal while half the time
// refused is shorter, then half the time refused after it. So a retry
// the bound brings forward never comes sooner than two windows after its
// refusal (the window's own retry comes after one).
func TestRefusedBoundTwoWindows(t *testing.T) {
	const addr = "10.0.0.5:6379"
	tests := []struct {
		name  string
		fleet int // at 3,000/s
	}{
		{name: "0.1 s window", fleet: 300},
		{name: "0.4 s window", fleet: 1200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, clk := newClocked(t, Options{FleetSize: tc.fleet, BreakerThreshold: -1, Backoff: backoff.Fixed{Every: 10 * time.Second}})
			run := refusedOutage(t, d, clk, addr, 5*time.Second)
			first := run.refused[0]
			for i, at := range run.refused[1:] {
				prev := run.refused[i]
				want := max((prev-first)/2, 2*run.window)
				if got := at - prev; got < want-time.Millisecond || got > want+time.Millisecond {
					t.Fatalf("refusal %d at %s (refusing for %s): retry %s later, want %s", i+1, prev, prev-first, got, want)
				}
			}
			if late := run.back - 5*time.Second; late > 2500*time.Millisecond {
				t.Errorf("back %s after a 5 s outage ended, want at most half of it", late)
			}
		})
	}
}

// TestRefusedNoWindowPolicyAlone: with the window off (ReconnectWindow
// -1) the bound has no floor to stand on, so a refused client is paced
// by the backoff policy alone: a fixed 1 s policy retries 1 s after
// every refusal, never sooner (half of the time refused would send the
// first retry at once).
func TestRefusedNoWindowPolicyAlone(t *testing.T) {
	const addr = "10.0.0.5:6379"
	d, clk := newClocked(t, Options{ReconnectWindow: -1, BreakerThreshold: -1, Backoff: backoff.Fixed{Every: time.Second}})
	run := refusedOutage(t, d, clk, addr, 5*time.Second)
	if len(run.refused) < 2 {
		t.Fatalf("refused %d times in a 5 s outage, want several", len(run.refused))
	}
	for i, at := range append(run.refused[1:], run.back) {
		if got := at - run.refused[i]; got != time.Second {
			t.Fatalf("attempt %d came %s after the refusal before it, want the policy's 1 s", i+1, got)
		}
	}
}
