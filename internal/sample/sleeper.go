package sample

import "time"

// sleeper is the clock Sampler.Run waits on between samples: arm sets when
// C next receives (re-arming replaces the previous time). C may receive
// early or stale — the caller re-checks the time — but never late. Only
// Run's goroutine arms it and receives; wake-ups do not go through it
// (Run selects on them directly, so a wake-up readies the sampler as
// before, without a kernel timer in between).
type sleeper interface {
	arm(d time.Duration)
	C() <-chan time.Time
	close()
}

// timerSleeper is the portable sleeper: one Go timer, reset per sleep.
type timerSleeper struct{ t *time.Timer }

func newTimerSleeper() *timerSleeper {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerSleeper{t: t}
}

func (s *timerSleeper) arm(d time.Duration) { s.t.Reset(d) }

func (s *timerSleeper) C() <-chan time.Time { return s.t.C }

func (s *timerSleeper) close() { s.t.Stop() }
