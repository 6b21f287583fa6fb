package sample

import "time"

// sleeper is what Sampler.Run sleeps on between samples: arm sets when the
// sleep ends, block sleeps until then or until poke (a wake-up, or ctx
// ending) — a poke between arm and block makes block return at once. Only
// Run's goroutine arms and blocks; poke is for any goroutine. The caller
// re-checks why it woke (a poke may be stale, or come from a wake-up that
// is spaced), so an early return is never wrong, only a little work.
type sleeper interface {
	arm(d time.Duration)
	block()
	poke()
	close()
}

// chanSleeper is the portable sleeper: a Go timer per sleep.
type chanSleeper struct {
	d      time.Duration
	poked  chan struct{}
	closed chan struct{}
}

func newChanSleeper() *chanSleeper {
	return &chanSleeper{poked: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (c *chanSleeper) arm(d time.Duration) { c.d = d }

func (c *chanSleeper) block() {
	if c.d <= 0 {
		return
	}
	t := time.NewTimer(c.d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.poked:
	case <-c.closed:
	}
}

func (c *chanSleeper) poke() { poke(c.poked) }

func (c *chanSleeper) close() { close(c.closed) }
