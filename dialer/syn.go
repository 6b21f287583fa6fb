package dialer

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The per-attempt SYN deadline (Options.SYNDeadline). Linux drops a SYN
// that meets a full accept queue (tcp_conn_request: ListenOverflows) and
// the client's kernel sends it again only after its initial RTO,
// TCP_TIMEOUT_INIT, 1 s: a client whose SYN was dropped in a reconnect
// storm comes back a second late, however idle the server is by then
// (docs/backoff.md, "The SYN deadline"). The SYN-ACK of a SYN that was
// not dropped comes within a round trip, so an attempt with no SYN-ACK
// well past the target's usual connect time has almost surely lost its
// SYN: abandon it (close the SYN_SENT socket) and dial again at once or
// at a point of the episode's window, whichever pacing says.
const (
	// synFloor is the least deadline: Linux's TCP_RTO_MIN, above the
	// time a loaded host takes to answer a SYN (softirq backlog,
	// scheduling) and above a Go runtime's timer slack.
	synFloor = 200 * time.Millisecond
	// synAssumedRTT is the connect time assumed before one to the target
	// was observed: the deadline is then 200 ms + 3 × 100 ms = 500 ms; a
	// longer path loses that first attempt only (synDeadline), then its
	// connect is observed.
	synAssumedRTT = 100 * time.Millisecond
	// kernelSYNRTO is TCP_TIMEOUT_INIT, when the kernel would send the
	// SYN again: a redial never waits past it.
	kernelSYNRTO = time.Second
)

// observeConnect records a connect that took took into t's smoothed
// connect time, as TCP estimates its RTO (RFC 6298: srtt and rttvar,
// gains 1/8 and 1/4). Karn's rule: a connect that took at least the
// kernel's SYN retransmit time may have been retransmitted and is not a
// sample — unless it is the first, where a long path is the conservative
// reading. A completed connect ends a run of abandons. Called with mu
// held.
func (d *Dialer) observeConnect(t *target, took time.Duration) {
	t.abandons = 0
	switch {
	case t.srtt == 0:
		t.srtt, t.rttvar = max(took, time.Microsecond), took/2
	case took < kernelSYNRTO:
		dev := t.srtt - took
		if dev < 0 {
			dev = -dev
		}
		t.rttvar += (dev - t.rttvar) / 4
		t.srtt += (took - t.srtt) / 8
	}
}

// synDeadline is how long t's next connect attempt may wait for its
// SYN-ACK before it is abandoned (learnedDeadline), inside a reconnect
// episode begun by a close or reset only, and 0 (no deadline) otherwise:
//
//   - Outside an episode (a process's first connects, a pool growing)
//     there is no fleet-wide tail to shorten, and a loaded client host
//     answers late for its own reasons: in the lab's warm-up at load 5–7
//     a 500 ms deadline abandoned 865 of 10,000 first connects, and each
//     abandon's cut slowed the kill that followed (docs/backoff.md).
//   - In an episode of timeouts alone (soft, see markLoss) a server or
//     path that answers nothing (a blip) loses SYNs because it is
//     unreachable, not because its accept queue is full; a redial adds a
//     SYN to the kernel's retransmits without coming back sooner
//     (simulate's 5 s blip on the busy server: 1,602 overflows with
//     cuts, 235 without). There silentDeadline cuts without a redial.
//   - After an abandon, until a connect completes: the deadline is for
//     the SYN one full accept queue dropped, and a server that answers
//     no SYN at all (a long path never observed, an overload that lasts)
//     gets the kernel's own schedule (1 s, 3 s, …), not a SYN every few
//     hundred ms.
//
// Called with mu held.
func (d *Dialer) synDeadline(t *target) time.Duration {
	if t.abandons > 0 || t.soft || !d.inEpisode(t, d.o.Now()) {
		return 0
	}
	return d.learnedDeadline(t)
}

// learnedDeadline is synFloor + srtt + 4 × rttvar of t's connects
// (200 ms + 3 × 100 ms before any was observed), or 0 when that exceeds
// Options.SYNDeadline (or it is -1): a path that long is not cut off, its
// SYN-ACK may come after the kernel's own retransmit. Called with mu
// held.
func (d *Dialer) learnedDeadline(t *target) time.Duration {
	if d.o.SYNDeadline == -1 {
		return 0
	}
	srtt, rttvar := t.srtt, t.rttvar
	if srtt == 0 {
		srtt, rttvar = synAssumedRTT, synAssumedRTT/2
	}
	dl := synFloor + srtt + 4*rttvar
	if dl > d.o.SYNDeadline {
		return 0
	}
	return dl
}

// attemptDeadline is synDeadline for an attempt starting at start, 0 when
// the deadline would not end before end (the dial's overall deadline,
// zero if none): the last attempt DialTimeout leaves room for is not cut.
// Called with mu held.
func (d *Dialer) attemptDeadline(t *target, start, end time.Time) time.Duration {
	dl := d.synDeadline(t)
	if dl > 0 && !end.IsZero() && !start.Add(dl).Before(end) {
		return 0
	}
	return dl
}

// silentDeadline is the deadline of t's next connect attempt, starting
// at start, in an episode of timeouts alone (soft, see markLoss; or after
// one, while its failures have not been reset by a healthy connection):
// Options.SilentCut (800 ms), below the kernel's first SYN retransmit
// (kernelSYNRTO, 1 s; 200 ms of margin for timers that run late). An
// attempt with no SYN-ACK by then is cut (its socket closed, so the
// kernel never sends its SYN again) and the dial then fails at its own
// deadline (end, DialTimeout), as the uncut attempt would have: the
// fleet keeps the pace the window and the backoff give it, and sends
// one SYN per attempt instead of the kernel's two. Every SYN the fleet
// sends during an outage is then one its dialers placed in their
// windows.
//
// Why: in a blip (the server unreachable) each connect's SYN is dropped
// and the kernel sends it again 1 s later; Linux fires the retransmit
// timers of a whole fleet's sockets together, at the timer wheel's
// granularity (~30 ms for a 1 s timer at HZ 250), so when the blip ends
// the retransmits of the dials made in its last second arrive in batches
// of 100–200 SYNs at once, on top of the window's own dials — more than a
// 128-slot accept queue holds. In the lab's 5 s blip at 10,000 clients
// every listen overflow of the dialer's fleet (258 in one run) fell in a
// 10 ms slot where such a batch landed, none where only the window's
// dials did (docs/backoff.md, "An episode of timeouts"). Failing at the
// cut instead (the next attempt drawn from the window at once) made the
// fleet dial ~1.7× as fast and overflowed more (1,383 in one run).
//
// None when the path's connects take too long for the cut (synFloor +
// srtt + 4 × rttvar, as learnedDeadline, at least the cut: the SYN-ACK
// could come after it), without an overall deadline or when the cut
// would not end before it (end), with SilentCut -1 (a Dial that does
// more than the TCP connect), with ReconnectWindow -1 (no episodes),
// or when SYNDeadline's learned deadline applies instead (never in a
// soft episode). Reserve does not apply it (its callers run their own
// connect timeouts). Called with mu held.
func (d *Dialer) silentDeadline(t *target, start, end time.Time) time.Duration {
	cut := d.o.SilentCut
	if cut == -1 || d.o.ReconnectWindow == -1 || !t.soft || !d.inEpisode(t, start) && t.failures == 0 {
		return 0
	}
	srtt, rttvar := t.srtt, t.rttvar
	if srtt == 0 {
		srtt, rttvar = synAssumedRTT, synAssumedRTT/2
	}
	if synFloor+srtt+4*rttvar >= cut {
		return 0
	}
	if end.IsZero() || !start.Add(cut).Before(end) {
		return 0
	}
	return cut
}

// abandon records an attempt started at attempt that was abandoned at
// now without a SYN-ACK, and returns how long to wait before dialling
// again. Its SYN was dropped (a full accept queue): the congestion signal
// a slow connect is, so the learned rate is cut — once per congestion
// event (see congestion), and the dial's attempts are one event: dial is
// when its first attempt started, so that an abandon and the same dial's
// later timeout or slow connect cut once. The redial is then paced like
// any retry in the episode — a point of what is left of the episode's
// (grown) window, drawn from its density — but never later than the
// kernel would have sent the SYN again (kernelSYNRTO after attempt),
// which is the whole point; outside an episode a uniform point before
// then. Either way the redials of a fleet's dropped SYNs spread at least
// as their dials did, not in a burst. (Drawing from the window as it was
// before the cut crowded the redials of SYNs dropped near its end into
// the little that was left of it: in the lab, ~800 redials within 0.3 s
// into a stalled server.) Called with mu held.
func (d *Dialer) abandon(t *target, attempt, dial time.Time) time.Duration {
	now := d.o.Now()
	t.stats.Dials++
	t.stats.AbandonedDials++
	t.abandons++
	gap := max(attempt.Add(kernelSYNRTO).Sub(now), 0)
	d.congestion(t, dial)
	u := d.o.Rand.Float64()
	wait := time.Duration(u * float64(gap))
	if w := d.window(t); w > 0 && d.inEpisode(t, now) {
		a := now.Sub(t.lostAt)
		wait = drawBetween(a, min(a+gap, d.span(t)), d.ramp(t), w, u) - a
	}
	d.emit(t, EventSYNTimeout, wait, nil)
	return wait
}

// connect makes the TCP connect of one dial: attempts with the target's
// SYN deadline, each abandoned one followed by a paced redial, all within
// ctx (which carries DialTimeout, the bound of the whole connect); in an
// episode of timeouts instead one attempt, cut at silentDeadline and
// then held to ctx's end (no redial). It returns the connection or the
// last attempt's error, when the first attempt started and when the last
// one did.
func (d *Dialer) connect(ctx context.Context, t *target, network, addr string) (net.Conn, time.Time, time.Time, error) {
	end, _ := ctx.Deadline()
	first := d.o.Now()
	for {
		start := d.o.Now()
		d.mu.Lock()
		dl := d.attemptDeadline(t, start, end)
		silent := false
		if dl == 0 {
			dl = d.silentDeadline(t, start, end)
			silent = dl > 0
		}
		d.mu.Unlock()
		if dl == 0 {
			raw, err := d.o.Dial(ctx, network, addr)
			return raw, first, start, err
		}
		actx, cancel := context.WithCancel(ctx)
		ct := startCutter(cancel, dl)
		raw, err := d.o.Dial(actx, network, addr)
		ct.stop()
		cut := err != nil && ctx.Err() == nil && ct.cut.Load()
		cancel()
		if !cut {
			return raw, first, start, err
		}
		if raw != nil {
			_ = raw.Close()
		}
		if silent {
			d.mu.Lock()
			t.stats.SilentCuts++
			d.mu.Unlock()
			// Held to the dial's deadline, as the uncut attempt would
			// have been: the same pace, one SYN fewer (see silentDeadline).
			<-ctx.Done()
			return nil, first, start, fmt.Errorf("no SYN-ACK within %s in an episode of timeouts, cut before the kernel's SYN retransmit: %w", dl, ctx.Err())
		}
		d.mu.Lock()
		wait := d.abandon(t, start, first)
		d.emit(t, EventDial, wait, nil)
		d.mu.Unlock()
		if wait > 0 && sleep(ctx, wait, d.o.Now) != nil && ctx.Err() != nil {
			return nil, first, start, ctx.Err()
		}
		// A wait that does not fit before the deadline is skipped: the
		// redial goes at once, and is the last attempt.
	}
}

// cutter cancels a connect attempt at its SYN deadline — but only when
// its timer fires on time. A process starved of CPU (a throttled
// container, a long GC pause, the lab's 15,000 client goroutines on a
// loaded host) fires the timer late, and by then the SYN-ACK may have
// arrived with nobody to notice it: cutting then would close a
// connection the kernel completed (a wasted accept for the server) and
// add a redial, in the very stall where the server can least afford it
// (the lab saw hundreds of abandons per 100 ms after client-side stalls).
// A late timer looks again after as long as it was late (at most the
// kernel's SYN retransmit time), giving the runtime time to deliver the
// connect's completion; only a timer that fires within lateWake of its
// due time cuts.
type cutter struct {
	cancel context.CancelFunc
	cut    atomic.Bool

	mu    sync.Mutex
	timer *time.Timer
	due   time.Time
}

// startCutter arms a cutter that calls cancel dl from now.
func startCutter(cancel context.CancelFunc, dl time.Duration) *cutter {
	c := &cutter{cancel: cancel, due: time.Now().Add(dl)}
	c.mu.Lock()
	c.timer = time.AfterFunc(dl, c.fire)
	c.mu.Unlock()
	return c
}

func (c *cutter) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if late := time.Since(c.due); late > lateWake {
		again := min(late, kernelSYNRTO)
		c.due = time.Now().Add(again)
		c.timer.Reset(again)
		return
	}
	c.cut.Store(true)
	c.cancel()
}

// stop disarms c.
func (c *cutter) stop() {
	c.mu.Lock()
	c.timer.Stop()
	c.mu.Unlock()
}
