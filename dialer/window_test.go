package dialer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/backoff"
)

// fakeClock is a settable clock for Reservation tests.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) advance(d time.Duration) { c.now = c.now.Add(d) }

func newClocked(t *testing.T, o Options) (*Dialer, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	o.Now = clk.Now
	o.Rand = rand.New(rand.NewPCG(1, 2))
	if o.Rate == 0 {
		o.Rate = -1
	}
	if o.FirstConnectWindow == 0 {
		o.FirstConnectWindow = -1
	}
	// Round numbers for the window tests (FleetSize/3000), and the window
	// alone unless a test is about when it opens (TestWindowOpensAfter…).
	if o.AcceptRate == 0 {
		o.AcceptRate = 3000
	}
	if o.DisconnectCost == 0 {
		o.DisconnectCost = -1
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d, clk
}

// connectHealthy makes one attempt that connects fast, handshakes and
// becomes stable.
func connectHealthy(t *testing.T, d *Dialer, clk *fakeClock, addr string) *Reservation {
	t.Helper()
	r, err := d.Reserve(addr)
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(r.Wait)
	if err := r.Dialed(time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	r.Handshake()
	r.Stable()
	return r
}

// waits returns the Wait of n Reserves made right after a loss, each
// followed by a fast, clean connect (so they do not change the window).
func spreadAfterLoss(t *testing.T, d *Dialer, addr string, n int) (lo, hi time.Duration) {
	t.Helper()
	lo = time.Hour
	for range n {
		r, err := d.Reserve(addr)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi = min(lo, r.Wait), max(hi, r.Wait)
		r.Close()
	}
	return lo, hi
}

func TestWindowSizedFromFleet(t *testing.T) {
	tests := []struct {
		name     string
		o        Options
		observed int
		want     time.Duration
	}{
		{"unknown fleet: ReconnectWindow", Options{}, 0, DefaultReconnectWindow},
		{"fleet hint / accept rate", Options{FleetSize: 6000, AcceptRate: 2000}, 0, 3 * time.Second},
		{"fleet hint / default accept rate", Options{FleetSize: 16000, AcceptRate: DefaultAcceptRate}, 0, 16000 * time.Second / DefaultAcceptRate},
		{"small fleet reconnects almost at once", Options{FleetSize: 30}, 0, 10 * time.Millisecond},
		{"observed connected_clients wins over the hint", Options{FleetSize: 30}, 15000, 5 * time.Second},
		{"capped", Options{FleetSize: 1_000_000, MaxReconnectWindow: 20 * time.Second}, 0, 20 * time.Second},
		{"disabled", Options{ReconnectWindow: -1, FleetSize: 5000}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, clk := newClocked(t, tt.o)
			const addr = "10.0.0.5:6379"
			r := connectHealthy(t, d, clk, addr)
			if tt.observed > 0 {
				d.ObserveClients(addr, tt.observed)
			}
			if got := d.Stats(addr).Window; got != tt.want {
				t.Fatalf("Window = %s, want %s", got, tt.want)
			}
			r.Lost(errors.New("EOF")) // CLIENT KILL: a healthy connection lost
			lo, hi := spreadAfterLoss(t, d, addr, 400)
			if tt.want == 0 {
				if hi != 0 {
					t.Fatalf("window disabled but waits up to %s", hi)
				}
				return
			}
			if lo < 0 || hi >= tt.want || hi < tt.want*9/10 || lo > tt.want/10 {
				t.Errorf("waits after the loss span [%s, %s], want spread over [0, %s)", lo, hi, tt.want)
			}
			if st := d.Stats(addr); st.Failures != 0 {
				t.Errorf("a loss of a healthy connection counted as failure: %+v", st)
			}
		})
	}
}

// TestWindowRegardlessOfAge: a connection lost before it was stable (a
// restart loop, a flapping failover), or one whose read timed out (a
// blip, or a slow server), gets the window too: connection age does not
// switch protection off. A timeout alone gets at most ReconnectWindow
// (see TestWindowTimeoutsAreSoft).
func TestWindowRegardlessOfAge(t *testing.T) {
	const addr = "10.0.0.5:6379"
	for _, tt := range []struct {
		name   string
		lose   func(r *Reservation)
		lo, hi time.Duration // the longest wait drawn must fall in [lo, hi)
	}{
		{"lost after handshake, before stable", func(r *Reservation) { r.Lost(errors.New("EOF")) }, time.Second, time.Hour},
		{"lost before handshake", func(r *Reservation) { r.Lost(errors.New("EOF")) }, time.Second, time.Hour},
		{"timeout on a stable connection", func(r *Reservation) { r.Stable(); r.Lost(errTimeout{}) },
			900 * time.Millisecond, DefaultReconnectWindow},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, clk := newClocked(t, Options{FleetSize: 4000})
			r, err := d.Reserve(addr)
			if err != nil {
				t.Fatal(err)
			}
			clk.advance(r.Wait)
			_ = r.Dialed(time.Millisecond, nil)
			if tt.name != "lost before handshake" {
				r.Handshake()
			}
			tt.lose(r)
			_, hi := spreadAfterLoss(t, d, addr, 200)
			if hi < tt.lo || hi >= tt.hi {
				t.Errorf("redials after the loss wait at most %s; want that within [%s, %s)", hi, tt.lo, tt.hi)
			}
		})
	}
}

// TestWindowTimeoutsAreSoft: an episode of timeouts (a loaded server
// answering late looks like that to each client) keeps the window at
// ReconnectWindow however large the fleet; a close by the server in the
// same episode gives it the fleet-sized window.
func TestWindowTimeoutsAreSoft(t *testing.T) {
	const addr = "10.0.0.5:6379"
	d, clk := newClocked(t, Options{FleetSize: 15000, BreakerThreshold: -1, Backoff: backoff.Immediate{}}) // 5s for the fleet
	a := connectHealthy(t, d, clk, addr)
	b := connectHealthy(t, d, clk, addr)
	a.Lost(errTimeout{})
	if w := d.Stats(addr).Window; w != DefaultReconnectWindow {
		t.Fatalf("window after a timeout: %s, want ReconnectWindow %s", w, DefaultReconnectWindow)
	}
	b.Lost(io.EOF) // the server closed the other connection: a fleet-wide event
	if w := d.Stats(addr).Window; w != 5*time.Second {
		t.Fatalf("window after a close in the same episode: %s, want the fleet's 5s", w)
	}

	// A slow first PING (timeout before the handshake) grows a soft
	// window from ReconnectWindow, not from the fleet's 5s.
	d, clk = newClocked(t, Options{FleetSize: 15000, BreakerThreshold: -1, Backoff: backoff.Immediate{}})
	connectHealthy(t, d, clk, addr).Lost(errTimeout{})
	r, _ := d.Reserve(addr)
	clk.advance(r.Wait)
	_ = r.Dialed(time.Millisecond, nil)
	r.Lost(errTimeout{}) // no reply: overload
	if w, want := d.Stats(addr).Window, grown(DefaultReconnectWindow, 1); w != want {
		t.Errorf("window after a slow first PING: %s, want %s (WindowGrowth × ReconnectWindow)", w, want)
	}
}

type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

// grown is w after n congestion signals at the default WindowGrowth.
func grown(w time.Duration, n int) time.Duration {
	for range n {
		w = time.Duration(float64(w) * DefaultWindowGrowth)
	}
	return w
}

// TestWindowGrowsOnCongestionAndDecays: failures and slow connects cut
// the learned admission rate by WindowGrowth, which grows the window by
// as much (multiplicative decrease); a reconnect episode whose connection
// connected fast and proved healthy raises the rate by AcceptRate/2, once
// per episode, up to MaxAcceptRate (additive increase); an episode that met
// congestion does not raise it.
func TestWindowGrowsOnCongestionAndDecays(t *testing.T) {
	const addr = "10.0.0.5:6379"
	d, clk := newClocked(t, Options{FleetSize: 3000, BreakerThreshold: -1})
	r, _ := d.Reserve(addr)
	if st := d.Stats(addr); st.Window != time.Second || st.AcceptRate != 3000 {
		t.Fatalf("initial window %s, rate %g", st.Window, st.AcceptRate)
	}
	clk.advance(r.Wait)
	_ = r.Dialed(2*time.Second, errors.New("connect timeout"))
	if w, want := d.Stats(addr).Window, grown(time.Second, 1); w != want {
		t.Fatalf("after a failed connect: window %s, want %s", w, want)
	}
	r, _ = d.Reserve(addr)
	if r.Wait <= 0 {
		t.Fatalf("no wait after a failure")
	}
	clk.advance(r.Wait)
	_ = r.Dialed(1100*time.Millisecond, nil) // SYN retransmitted: slow
	if w, want := d.Stats(addr).Window, grown(time.Second, 2); w != want {
		t.Fatalf("after a slow connect: window %s, want %s", w, want)
	}
	r.Handshake()
	r.Stable() // slow: proves nothing about the rate
	if st := d.Stats(addr); st.Window != grown(time.Second, 2) {
		t.Fatalf("a slow connect changed the window to %s (rate %g)", st.Window, st.AcceptRate)
	}

	// Clean episodes: +1,500/s each, from 3,000/1.5² = 1,333/s up to
	// MaxAcceptRate (4 × 3,000).
	rate := d.Stats(addr).AcceptRate
	for i := range 10 {
		clk.advance(time.Minute)
		r.Lost(io.EOF) // the fleet's loss: a new episode
		for range 2 {  // two clean connects in one episode raise once
			r = connectHealthy(t, d, clk, addr)
		}
		want := min(rate+1500, 12000)
		if got := d.Stats(addr).AcceptRate; math.Abs(got-want) > 1e-6 {
			t.Fatalf("clean episode %d: rate %g, want %g", i, got, want)
		}
		rate = want
	}
	if w := d.Stats(addr).Window; w != 250*time.Millisecond {
		t.Errorf("at MaxAcceptRate the window is %s, want 3,000/12,000/s = 250ms", w)
	}

	// An episode that met congestion: cut, and not raised by its clean
	// connect.
	clk.advance(time.Minute)
	r.Lost(io.EOF)
	r, _ = d.Reserve(addr)
	clk.advance(r.Wait)
	_ = r.Dialed(time.Second, errTimeout{})
	connectHealthy(t, d, clk, addr)
	if got := d.Stats(addr).AcceptRate; got != 8000 {
		t.Errorf("after an episode with a failure the rate is %g, want 12,000/1.5 = 8,000", got)
	}
}

// TestMaxAcceptRateOption: MaxAcceptRate below AcceptRate, NaN or
// infinite is an error at construction; equal to it keeps the rate fixed
// except for cuts.
func TestMaxAcceptRateOption(t *testing.T) {
	for _, o := range []Options{
		{AcceptRate: 3000, MaxAcceptRate: 2000},
		{MaxAcceptRate: math.NaN()},
		{MaxAcceptRate: math.Inf(1)},
		{AcceptRate: math.NaN()},
		{AcceptRate: math.Inf(1)},
	} {
		if _, err := New(o); !errors.Is(err, ErrInvalidRate) {
			t.Errorf("%+v: err %v, want ErrInvalidRate", o, err)
		}
	}
	const addr = "10.0.0.5:6379"
	d, clk := newClocked(t, Options{FleetSize: 3000, MaxAcceptRate: 3000})
	r := connectHealthy(t, d, clk, addr)
	r.Lost(io.EOF)
	connectHealthy(t, d, clk, addr)
	if st := d.Stats(addr); st.AcceptRate != 3000 || st.Window != time.Second {
		t.Errorf("MaxAcceptRate = AcceptRate: after a clean episode rate %g, window %s; want 3000, 1s", st.AcceptRate, st.Window)
	}
}

// TestWindowEpisodeAnchoredAtLoss: a failure inside the reconnect window
// grows the window but keeps its start at the loss, and the retry lands in
// what is left of the grown window; a loss after the window has ended
// starts a new episode.
func TestWindowEpisodeAnchoredAtLoss(t *testing.T) {
	const addr = "10.0.0.5:6379"
	d, clk := newClocked(t, Options{FleetSize: 6000, BreakerThreshold: -1,
		Backoff: backoff.Immediate{}}) // isolate the window from the backoff
	r := connectHealthy(t, d, clk, addr)
	lossAt := clk.now
	r.Lost(errors.New("EOF")) // the fleet's loss; window 2s
	clk.advance(1500 * time.Millisecond)
	r, err := d.Reserve(addr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Wait > 500*time.Millisecond {
		t.Fatalf("at 1.5s into a 2s window the dial waits %s, want within the 0.5s left", r.Wait)
	}
	clk.advance(r.Wait)
	_ = r.Dialed(time.Second, errors.New("connect timeout")) // fails inside the window: grows
	if w := d.Stats(addr).Window; w != grown(2*time.Second, 1) {
		t.Fatalf("window after a failure inside it: %s, want %s", w, grown(2*time.Second, 1))
	}
	left := lossAt.Add(grown(2*time.Second, 1)).Sub(clk.now)
	lo, hi := spreadAfterLoss(t, d, addr, 400)
	if hi >= left || hi < left*9/10 || lo > left/10 {
		t.Errorf("retries after the failure wait [%s, %s], want spread over the %s left of the episode (not a new window)", lo, hi, left)
	}
	// Well after the episode a new loss starts a new window at its time.
	clk.advance(time.Minute)
	r = connectHealthy(t, d, clk, addr)
	r.Lost(errors.New("EOF"))
	w := d.Stats(addr).Window
	_, hi = spreadAfterLoss(t, d, addr, 400)
	if hi < w*9/10 {
		t.Errorf("a new loss after the episode spreads over %s, want the whole %s window", hi, w)
	}
}

// TestWindowGrowthOption: WindowGrowth sets how far one congestion signal
// grows the window; a value that could not grow it (≤ 1, NaN) or that
// jumps past MaxWindowGrowth is an error at construction, never a
// silently unprotected dialer.
func TestWindowGrowthOption(t *testing.T) {
	const addr = "10.0.0.5:6379"
	for _, g := range []float64{1, 0.5, -1, 4.5, math.NaN(), math.Inf(1)} {
		if _, err := New(Options{WindowGrowth: g}); !errors.Is(err, ErrInvalidGrowth) {
			t.Errorf("WindowGrowth %g: err %v, want ErrInvalidGrowth", g, err)
		}
	}
	for _, g := range []float64{1.25, 2, 4} {
		d, clk := newClocked(t, Options{FleetSize: 3000, BreakerThreshold: -1, WindowGrowth: g})
		r, _ := d.Reserve(addr)
		clk.advance(r.Wait)
		_ = r.Dialed(2*time.Second, errors.New("connect timeout"))
		if w, want := d.Stats(addr).Window, time.Duration(g*float64(time.Second)); w != want {
			t.Errorf("WindowGrowth %g: window after a failure %s, want %s", g, w, want)
		}
	}
}

// TestWindowYoungLossSameAsOld: a connection lost after its handshake but
// before StableAfter (a fleet killed 2 s after it started) gets the same
// fleet-sized window as an old one — its age changes neither the
// protection nor the recovery — while it still counts as a failure for
// the backoff; a young loss inside an episode (a redial admitted and then
// dropped) grows the window like any failure.
func TestWindowYoungLossSameAsOld(t *testing.T) {
	const addr = "10.0.0.5:6379"
	d, clk := newClocked(t, Options{FleetSize: 6000, BreakerThreshold: -1}) // 2s
	r, _ := d.Reserve(addr)
	clk.advance(r.Wait)
	_ = r.Dialed(time.Millisecond, nil)
	r.Handshake()
	clk.advance(2 * time.Second) // younger than StableAfter
	r.Lost(errors.New("EOF"))
	st := d.Stats(addr)
	if st.Window != 2*time.Second {
		t.Fatalf("window after a young connection's loss: %s, want the fleet's 2s", st.Window)
	}
	if st.Failures != 1 {
		t.Fatalf("a young connection's loss counted %d failures, want 1", st.Failures)
	}
	lo, hi := spreadAfterLoss(t, d, addr, 400)
	if hi < 1800*time.Millisecond || lo > 200*time.Millisecond {
		t.Fatalf("redials after a young loss wait [%s, %s], want spread over the 2s window", lo, hi)
	}
	// A redial inside the episode that is admitted and then dropped: grows.
	r, _ = d.Reserve(addr)
	clk.advance(r.Wait)
	_ = r.Dialed(time.Millisecond, nil)
	r.Handshake()
	r.Lost(errors.New("EOF"))
	if w, want := d.Stats(addr).Window, grown(2*time.Second, 1); w != want {
		t.Errorf("window after a young loss inside the episode: %s, want %s", w, want)
	}
}

// TestWindowRampsAfterDisconnect: with the fleet size known, an episode
// begun by a close or reset spreads its dials with a density that rises
// linearly over FleetSize × DisconnectCost (the server is still tearing
// the fleet's connections down) and is flat after it, so the episode
// lasts ramp/2 + window; an episode of timeouts, an unknown fleet or
// DisconnectCost -1 spread uniformly over the window.
func TestWindowRampsAfterDisconnect(t *testing.T) {
	const addr = "10.0.0.5:6379"
	for _, tt := range []struct {
		name         string
		o            Options
		loss         error
		ramp, window time.Duration
	}{
		{"close, 10,000 clients, 50µs", Options{FleetSize: 10000, DisconnectCost: 50 * time.Microsecond}, io.EOF,
			500 * time.Millisecond, 10000 * time.Second / 3000},
		{"reset, 6,000 clients, 100µs", Options{FleetSize: 6000, DisconnectCost: 100 * time.Microsecond}, syscall.ECONNRESET,
			600 * time.Millisecond, 2 * time.Second},
		{"timeout: none", Options{FleetSize: 10000, DisconnectCost: 50 * time.Microsecond}, errTimeout{},
			0, DefaultReconnectWindow},
		{"fleet unknown: none", Options{DisconnectCost: 50 * time.Microsecond}, io.EOF, 0, DefaultReconnectWindow},
		{"off", Options{FleetSize: 10000, DisconnectCost: -1}, io.EOF, 0, 10000 * time.Second / 3000},
		{"capped at the window", Options{FleetSize: 1_000_000, DisconnectCost: time.Millisecond, MaxReconnectWindow: 10 * time.Second}, io.EOF,
			10 * time.Second, 10 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, clk := newClocked(t, tt.o)
			connectHealthy(t, d, clk, addr).Lost(tt.loss)
			const n = 4000
			var early int // waits in the first half of the ramp (or in a tenth of the window)
			cut := tt.window / 10
			if tt.ramp > 0 {
				cut = tt.ramp / 2
			}
			var hi time.Duration
			for range n {
				r, err := d.Reserve(addr)
				if err != nil {
					t.Fatal(err)
				}
				hi = max(hi, r.Wait)
				if r.Wait < cut {
					early++
				}
				r.Close()
			}
			end := tt.ramp/2 + tt.window
			if hi >= end || hi < end-tt.window/20 {
				t.Errorf("longest wait %s, want just under the episode's end %s", hi, end)
			}
			// The share of dials before cut: r/8w for a ramp (a
			// quarter of the uniform share), cut/w without one.
			want := cut.Seconds() / tt.window.Seconds()
			if tt.ramp > 0 {
				want = tt.ramp.Seconds() / (8 * tt.window.Seconds())
			}
			if got := float64(early) / n; math.Abs(got-want) > 0.01 {
				t.Errorf("%.3f of the dials wait less than %s, want %.3f", got, cut, want)
			}
		})
	}
}

// TestDrawIn checks the episode's density directly: quantiles of the ramp
// and of the flat part, and a retry drawn from what is left.
func TestDrawIn(t *testing.T) {
	const r, w = 500 * time.Millisecond, 3 * time.Second
	for _, tt := range []struct {
		a    time.Duration
		u    float64
		want time.Duration
	}{
		{0, 0, 0},
		{0, 1, r/2 + w},
		{0, 0.5, w/2 + r/2}, // in the flat part: u·w + r/2
		{0, 1.0 / 48, time.Duration(math.Sqrt(2 * 0.5 * 3 / 48 * 1e18))}, // in the ramp: √(2·r·u·w) = 0.25s
		{2 * time.Second, 0, 2 * time.Second},                            // a retry draws from what is left
		{2 * time.Second, 1, r/2 + w},
		{2 * time.Second, 0.5, 2*time.Second + (r/2+w-2*time.Second)/2},
		{5 * time.Second, 0.3, 5 * time.Second}, // after the end: now
	} {
		got := drawIn(tt.a, r, w, tt.u)
		if d := got - tt.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("drawIn(%s, u=%g) = %s, want %s", tt.a, tt.u, got, tt.want)
		}
	}
	// Without a ramp: uniform over what is left of the window.
	if got := drawIn(time.Second, 0, w, 0.5); got != 2*time.Second {
		t.Errorf("no ramp: drawIn(1s, 0.5) = %s, want 2s", got)
	}
}

// TestRefusedConnects: a refused connect (nothing listens: a restart) backs
// the target off like a failure, but it neither grows the window nor, however
// many come in a row, opens the breaker; a timed-out connect still does
// both, and a half-open probe that is refused reopens the circuit.
func TestRefusedConnects(t *testing.T) {
	const addr = "10.0.0.5:6379"
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tt := range []struct {
		name     string
		err      error
		wantOpen bool // congestion: opens the breaker and grows the window
	}{
		{"refused", refused, false},
		{"refused, wrapped", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), false},
		{"timed out", errTimeout{}, true},
		{"other error", errors.New("no route to host"), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, clk := newClocked(t, Options{FleetSize: 3000, BreakerThreshold: 3})
			prev := time.Second // 3,000 connections at 3,000/s
			for i := range 6 {
				r, err := d.Reserve(addr)
				if err != nil {
					if !tt.wantOpen || i < 3 {
						t.Fatalf("attempt %d: %v", i+1, err)
					}
					break
				}
				clk.advance(r.Wait)
				_ = r.Dialed(time.Millisecond, tt.err)
				st := d.Stats(addr)
				grew := st.Window > prev || st.Window == DefaultMaxReconnectWindow
				if st.Failures != i+1 || grew != tt.wantOpen {
					t.Fatalf("attempt %d: failures %d, window %s (was %s): want counted, grown %v", i+1, st.Failures, st.Window, prev, tt.wantOpen)
				}
				prev = st.Window
			}
			if open := d.Stats(addr).Breaker == "open"; open != tt.wantOpen {
				t.Errorf("breaker open %v after 6 failures, want %v", open, tt.wantOpen)
			}
		})
	}

	// A probe's refusal reopens the circuit.
	d, clk := newClocked(t, Options{BreakerThreshold: 1, BreakerOpenFor: time.Second})
	r, _ := d.Reserve(addr)
	_ = r.Dialed(time.Millisecond, errTimeout{}) // opens
	clk.advance(2 * time.Second)
	r, err := d.Reserve(addr) // the probe
	if err != nil || d.Stats(addr).Breaker != "half-open" {
		t.Fatalf("probe: %v, breaker %s", err, d.Stats(addr).Breaker)
	}
	_ = r.Dialed(time.Millisecond, refused)
	if b := d.Stats(addr).Breaker; b != "open" {
		t.Errorf("after a refused probe breaker %s, want open", b)
	}
}

// TestRespreadLateWake: a dial whose wait ended late (a CPU-starved
// process fires every due timer at once) waits again a uniform part of
// how late it was; a punctual one does not, and a done context gives up
// the extra wait.
func TestRespreadLateWake(t *testing.T) {
	d, _ := newClocked(t, Options{})
	if got := d.respread(t.Context(), lateWake-time.Millisecond); got != 0 {
		t.Errorf("punctual wake waited %s more", got)
	}
	const late = 30 * time.Millisecond
	var hi time.Duration
	for range 5 {
		got := d.respread(t.Context(), late)
		if got < 0 || got >= late {
			t.Fatalf("late by %s: waited %s more, want within [0, %s)", late, got, late)
		}
		hi = max(hi, got)
	}
	if hi == 0 {
		t.Errorf("five late wakes never waited")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if got := d.respread(ctx, time.Hour); got != 0 {
		t.Errorf("done context: waited %s more", got)
	}
}

// TestOneCutPerCongestionEvent: the failures of attempts that were all
// dialled before the rate was cut (a pool meeting one storm) cut it once;
// an attempt dialled after the cut that fails cuts it again.
func TestOneCutPerCongestionEvent(t *testing.T) {
	const addr = "10.0.0.5:6379"
	d, clk := newClocked(t, Options{FleetSize: 3000, BreakerThreshold: -1, Backoff: backoff.Immediate{}})
	pool, _ := reserveAll(t, d, addr, 8)
	clk.advance(10 * time.Millisecond)
	for _, r := range pool {
		_ = r.Dialed(2*time.Second, errTimeout{})
		clk.advance(time.Millisecond)
	}
	if st := d.Stats(addr); st.AcceptRate != 2000 || st.Window != grown(time.Second, 1) {
		t.Fatalf("8 failures of one pool's simultaneous dials: rate %g, window %s; want one cut (2000, %s)", st.AcceptRate, st.Window, grown(time.Second, 1))
	}
	r, _ := d.Reserve(addr) // dialled after the cut
	clk.advance(r.Wait)
	_ = r.Dialed(time.Millisecond, errors.New("connection reset"))
	if st := d.Stats(addr); st.Window != grown(time.Second, 2) {
		t.Errorf("a failure of a dial made after the cut: window %s, want %s", st.Window, grown(time.Second, 2))
	}
	d.ReportOverload(addr, nil) // no attempt to date: always cuts
	if st := d.Stats(addr); st.Window != grown(time.Second, 3) {
		t.Errorf("after ReportOverload: window %s, want %s", st.Window, grown(time.Second, 3))
	}
}

// TestRefusedRestartsWindow: a refused connect (the server is down)
// starts the episode's window again at the refusal, without growing it:
// the retries spread over a whole window from the refusal, not over what
// was left of the old one.
func TestRefusedRestartsWindow(t *testing.T) {
	const addr = "10.0.0.5:6379"
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	d, clk := newClocked(t, Options{FleetSize: 3000, BreakerThreshold: -1, Backoff: backoff.Immediate{}}) // 1s
	connectHealthy(t, d, clk, addr).Lost(io.EOF)
	clk.advance(800 * time.Millisecond)
	r, _ := d.Reserve(addr)
	clk.advance(r.Wait)
	_ = r.Dialed(time.Millisecond, refused)
	if w := d.Stats(addr).Window; w != time.Second {
		t.Fatalf("a refusal changed the window to %s", w)
	}
	clk.advance(100 * time.Millisecond)
	lo, hi := spreadAfterLoss(t, d, addr, 50)
	if lo != 900*time.Millisecond || hi != lo {
		t.Errorf("retries 100ms after the refusal wait [%s, %s], want one whole 1s window after it: 900ms", lo, hi)
	}
}

// TestOneBackoffPerFailureEvent: the failures of attempts that were all
// dialled before the target's last counted failure (a pool's connections
// refused or reset together) count once for the backoff; an attempt
// dialled after it that fails counts again, as each of one client's
// successive attempts does.
func TestOneBackoffPerFailureEvent(t *testing.T) {
	const addr = "10.0.0.5:6379"
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	for _, tc := range []struct {
		name string
		err  error
	}{
		{name: "refused", err: refused},
		{name: "reset", err: errors.New("connection reset")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, clk := newClocked(t, Options{FleetSize: 3000, BreakerThreshold: -1})
			pool, _ := reserveAll(t, d, addr, 8)
			clk.advance(10 * time.Millisecond)
			for _, r := range pool {
				_ = r.Dialed(time.Millisecond, tc.err)
				clk.advance(time.Millisecond)
			}
			if st := d.Stats(addr); st.Failures != 1 || st.DialFailures != 8 {
				t.Fatalf("8 simultaneous dials failed: %d backoff failures, %d dial failures; want 1, 8", st.Failures, st.DialFailures)
			}
			r, _ := d.Reserve(addr) // dialled after the counted failure
			clk.advance(r.Wait)
			_ = r.Dialed(time.Millisecond, tc.err)
			if st := d.Stats(addr); st.Failures != 2 {
				t.Errorf("a dial made after the failure failed: %d backoff failures, want 2", st.Failures)
			}
			d.ReportOverload(addr, nil) // no attempt to date: always counts
			if st := d.Stats(addr); st.Failures != 3 {
				t.Errorf("after ReportOverload: %d backoff failures, want 3", st.Failures)
			}
		})
	}
}
