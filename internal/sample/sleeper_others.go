//go:build !linux

package sample

// newSleeper returns the sampler's clock: a Go timer.
func newSleeper() sleeper { return newTimerSleeper() }
