package sample

import "time"

// sleeper is the clock Sampler.Run waits on between samples, in Run's own
// goroutine: arm sets when sleep next returns (re-arming replaces the
// previous time), interrupt makes a sleep return at once (the one under
// way, or else the next one). sleep may return early or stale — the
// caller re-checks the time and its wake-ups — but never late. Only Run's
// goroutine arms and sleeps; interrupt may be called from any goroutine.
// Wake-ups interrupt the sleep directly (no kernel timer in between): the
// sampler is readied by the goroutine that saw the wake-up, as before.
type sleeper interface {
	arm(d time.Duration)
	sleep()
	interrupt()
	close()
}

// timerSleeper is the portable sleeper: one Go timer, reset per sleep.
type timerSleeper struct {
	t    *time.Timer
	intr chan struct{}
}

func newTimerSleeper() *timerSleeper {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerSleeper{t: t, intr: make(chan struct{}, 1)}
}

func (s *timerSleeper) arm(d time.Duration) { s.t.Reset(d) }

func (s *timerSleeper) sleep() {
	select {
	case <-s.t.C:
	case <-s.intr:
	}
}

func (s *timerSleeper) interrupt() { poke(s.intr) }

func (s *timerSleeper) close() { s.t.Stop() }
