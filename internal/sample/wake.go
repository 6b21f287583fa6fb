package sample

import (
	"context"
	"sync"
	"time"
)

// WakeLevel ranks what a wake-up says about the listener. A higher level
// is news even right after an early sample of a lower one: the queue
// filling up is followed within a millisecond by the first drop, and the
// sample taken for the first must not make the second wait.
type WakeLevel uint8

const (
	// WakeFilling: the accept queue is filling (the accept-queue poller
	// saw it at least half full); nothing was dropped yet. The zero
	// Level of a Wake means this.
	WakeFilling WakeLevel = 1
	// WakeDropped: the listener is dropping connections (the eBPF
	// source saw a SYN meet a full queue).
	WakeDropped WakeLevel = 2
)

// Wake is a source's channel asking for an early sample, with the level
// of what its firing means.
//
// The first wake-up of each level since the last regular sample (and at
// least once per Interval) is sampled at once and published as soon as
// the Prompt sources answered; a regular or spaced sample still waiting
// for a stalled source is cut short for it the same way. Any other
// wake-up is sampled no sooner than FastInterval after the previous
// sample, waiting for every source. So at most one early sample per level
// comes between two regular ones, and a drop that follows a filling
// queue's early sample is sampled at once too (before, it waited ~100 ms
// for the spacing and ~80 ms more for the stalled Valkey's source).
type Wake struct {
	C     <-chan struct{}
	Level WakeLevel
}

// wakes merges the Wakes' firings for Run: the highest level pending, and
// the highest level sampled at once since the allowance was last renewed.
type wakes struct {
	interval time.Duration

	mu      sync.Mutex
	pending WakeLevel
	atOnce  WakeLevel
	renewed time.Time

	// signal holds a token while a wake-up is pending; urgent while the
	// pending one is to be sampled at once.
	signal chan struct{}
	urgent chan struct{}
	// notify, when set, is called after each fire (Run: interrupt the
	// sampler's sleep, which then looks at signal).
	notify func()
}

func newWakes(interval time.Duration) *wakes {
	return &wakes{interval: interval, signal: make(chan struct{}, 1), urgent: make(chan struct{}, 1)}
}

// forward turns w's firings into fire calls until ctx is done.
func (ws *wakes) forward(ctx context.Context, w Wake) {
	level := w.Level
	if level == 0 {
		level = WakeFilling
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.C:
			ws.fire(level)
			if ws.notify != nil {
				ws.notify()
			}
		}
	}
}

// fire records a wake-up of level.
func (ws *wakes) fire(level WakeLevel) {
	// The tokens are left under the lock so that take, which drains
	// urgent, never leaves one behind for a wake-up it consumed.
	ws.mu.Lock()
	if level > ws.pending {
		ws.pending = level
	}
	poke(ws.signal)
	if ws.pending > ws.atOnce {
		poke(ws.urgent)
	}
	ws.mu.Unlock()
}

// renew starts a new allowance (a regular sample starts at now).
func (ws *wakes) renew(now time.Time) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.atOnce, ws.renewed = 0, now
	if ws.pending > 0 {
		poke(ws.urgent)
	}
}

// take consumes the pending wake-up: its level (0 if an earlier take
// consumed it already) and whether it is to be sampled at once.
func (ws *wakes) take(now time.Time) (WakeLevel, bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	level := ws.pending
	ws.pending = 0
	select {
	case <-ws.urgent:
	default:
	}
	if level == 0 {
		return 0, false
	}
	if now.Sub(ws.renewed) >= ws.interval {
		// Wake-ups kept the timer from firing for a whole interval:
		// renew anyway, so a new episode is not spaced behind the
		// last one.
		ws.atOnce, ws.renewed = 0, now
	}
	if level <= ws.atOnce {
		return level, false
	}
	ws.atOnce = level
	return level, true
}

// poke leaves a token in c unless one is there already.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
