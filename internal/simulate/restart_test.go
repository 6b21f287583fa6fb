package simulate

import (
	"github.com/stormguard/stormguard/backoff"
	"testing"
	"time"
)

// TestRestartExitOverflows: a killed server's exit closes its clients'
// connections one after another (ExitCost each) and its listener last;
// the dead process accepts nothing. A fleet on many hosts notices each
// close at once and redials: the SYNs that reach the listener before it
// closes fill the accept queue (limit + 1 = 129) and the rest overflow;
// the 129 queued connections are reset when the listener closes, each a
// failed first PING (the lab's restarts: clients + 129 failed commands).
func TestRestartExitOverflows(t *testing.T) {
	m := DefaultModel()
	m.ExitCost = 12 * time.Microsecond // RTT 50 µs: the last 4 closes' SYNs come after the listener's
	const n = 1000
	// Down outlasts the run: the overflowed SYNs' retransmits (~1 s
	// later) are refused, not accepted by a new server.
	f := Fleet{Clients: n, Strategy: "fixed", Policy: backoff.Params{Delay: 300 * time.Millisecond}, Scenario: "restart",
		Down: 5 * time.Second, Duration: 2 * time.Second}
	r := run(t, m, f)
	// Client i's close leaves at -n·ExitCost + i·ExitCost, its SYN reaches
	// the listener one RTT later; the listener closes at 0.
	before := 0
	for i := 0; i < n; i++ {
		if time.Duration(i)*m.ExitCost+m.RTT < n*m.ExitCost {
			before++
		}
	}
	queued := m.acceptLimit() + 1
	// The SYNs that came within one RTT before the queue filled got their
	// SYN-ACK (the queue fills at the final ACK): their final ACKs
	// overflow too, and those handshakes are reset with the listener.
	late := int(r.ListenOverflows) - (before - queued)
	if late < 0 || late > 8 {
		t.Errorf("%d overflows, want %d SYNs dropped (%d before the listener closed, %d queued) plus a few final ACKs",
			r.ListenOverflows, before-queued, before, queued)
	}
	if want := int64(n + queued + late); r.FailedCommands != want {
		t.Errorf("%d failed commands, want %d (every close, every queued connection and dropped handshake reset)", r.FailedCommands, want)
	}
	if r.RecoveredClients != 0 {
		t.Errorf("%d clients back while the server is down", r.RecoveredClients)
	}
}

// TestRestartTimelineHoldsTheExit: the exit runs before t0 (the lab marks
// t0 once the killed server is gone); the timeline has buckets for it,
// and still every connect attempt, failed command and client back is in
// a bucket.
func TestRestartTimelineHoldsTheExit(t *testing.T) {
	m := DefaultModel()
	m.NoticeCost, m.AnswerCost, m.DialCost = 10*time.Microsecond, 5*time.Microsecond, 16*time.Microsecond
	m.ExitCost = 100 * time.Microsecond // 3,000 clients: 300 ms of exit
	for seed := uint64(1); seed <= 3; seed++ {
		r := run(t, m, Fleet{Clients: 3000, Strategy: "full-jitter", Scenario: "restart", Period: 3 * time.Second, Seed: seed})
		sum := func(tl []int64) (s int64) {
			for _, v := range tl {
				s += v
			}
			return s
		}
		if got := sum(r.Timeline); got != r.ConnectAttempts {
			t.Errorf("seed %d: timeline holds %d connects, the run made %d", seed, got, r.ConnectAttempts)
		}
		if got := sum(r.FailedTimeline); got != r.FailedCommands {
			t.Errorf("seed %d: timeline holds %d failed commands, the run had %d", seed, got, r.FailedCommands)
		}
		if got := sum(r.RecoveredTimeline); got != int64(r.RecoveredClients) || !r.Recovered {
			t.Errorf("seed %d: timeline holds %d back, %d recovered (%v)", seed, got, r.RecoveredClients, r.Recovered)
		}
		if len(r.FailedTimeline) == 0 || r.FailedTimeline[0] == 0 {
			t.Errorf("seed %d: the exit's first closes are not in the first bucket: %v", seed, r.FailedTimeline)
		}
		// Recovery is timed from t0, the listener's close: the server is
		// back Down (1 s) after it.
		if got := ttr(r); got < time.Second {
			t.Errorf("seed %d: recovered at %v, before the server was back", seed, got)
		}
	}
}

// TestWheelBeforeZero: a timer armed before t0 (a restart's exit) fires
// on the same tick boundaries as one armed after: the wheel's clock is
// floored, not truncated toward zero.
func TestWheelBeforeZero(t *testing.T) {
	const hz = 250
	for _, now := range []time.Duration{-5 * time.Millisecond, -33 * time.Millisecond, -1, -400 * time.Millisecond} {
		d := wheelDelay(now, 0, time.Second, hz)
		fire := now + d
		if d < time.Second || fire%(32*time.Millisecond) != 0 || d >= time.Second+36*time.Millisecond {
			t.Errorf("armed at %v for 1s: fires %v later, at %v; want a 32ms boundary within 1s..1.036s", now, d, fire)
		}
	}
}
