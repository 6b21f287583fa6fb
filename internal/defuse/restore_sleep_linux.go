//go:build linux

package defuse

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// sleepUntil blocks until the wall clock reaches at, or ctx ends. It sleeps
// with clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME): the kernel wakes it
// at the recorded expiry itself. A relative timer (time.After) runs on the
// monotonic clock, which stands still while the host is suspended and does
// not follow a stepped wall clock, so it would fire at another instant than
// the `expires` that list shows and every other stormguard run goes by.
// When ctx ends first, the sleeping thread is left to wake at at (the
// restore process exits long before).
func sleepUntil(ctx context.Context, at time.Time) error {
	if !time.Now().Before(at) {
		return ctx.Err()
	}
	ts := unix.NsecToTimespec(at.UnixNano())
	woke := make(chan error, 1)
	go func() {
		for {
			// EINTR: a signal handler ran (the Go runtime preempts
			// threads with signals); the absolute deadline stays.
			if err := unix.ClockNanosleep(unix.CLOCK_REALTIME, unix.TIMER_ABSTIME, &ts, nil); !errors.Is(err, unix.EINTR) {
				woke <- err
				return
			}
		}
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-woke:
		if err != nil {
			return fmt.Errorf("sleep until %s: %w", at.Format(time.RFC3339Nano), err)
		}
		return nil
	}
}
