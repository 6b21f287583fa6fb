//go:build !linux

package sample

// newSleeper returns the sampler's sleeper: a Go timer per sleep.
func newSleeper() sleeper { return newChanSleeper() }
