//go:build !linux

package defuse

import (
	"context"
	"time"
)

// sleepUntil blocks until the wall clock reaches at, or ctx ends. The
// timer runs on the monotonic clock, so the wall clock is read again after
// each wake (see the Linux version, which sleeps on the wall clock).
func sleepUntil(ctx context.Context, at time.Time) error {
	for {
		d := time.Until(at)
		if d <= 0 {
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}
