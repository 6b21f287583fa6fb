package sample

import (
	"testing"
	"time"
)

// TestSleepers: each sleeper (the platform's and the portable one) sleeps
// no shorter than armed, re-arming replaces the earlier time (an hour
// re-armed to 20 ms ends), and interrupt ends a sleep under way or, when
// called before, the next one.
func TestSleepers(t *testing.T) {
	for _, tc := range []struct {
		name string
		new  func() sleeper
	}{{"platform", newSleeper}, {"portable", func() sleeper { return newTimerSleeper() }}} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.new()
			defer s.close()
			t0 := time.Now()
			s.arm(20 * time.Millisecond)
			s.sleep()
			if el := time.Since(t0); el < 20*time.Millisecond {
				t.Errorf("slept %v, less than the armed 20ms", el)
			}

			s.arm(time.Hour)
			s.arm(20 * time.Millisecond)
			within(t, s.sleep, "re-arming did not replace the earlier time")

			s.arm(time.Hour)
			go func() { time.Sleep(10 * time.Millisecond); s.interrupt() }()
			within(t, s.sleep, "interrupt did not end the sleep under way")

			s.interrupt()
			within(t, s.sleep, "an interrupt before the sleep did not end it")

			// The interrupt is used up: the next sleep lasts until armed.
			t0 = time.Now()
			s.arm(20 * time.Millisecond)
			s.sleep()
			if el := time.Since(t0); el < 20*time.Millisecond {
				t.Errorf("after an interrupt, slept %v, less than the armed 20ms", el)
			}
		})
	}
}

// within runs f and fails the test if it has not returned in 10 s (an
// hour's sleep that was to be cut short).
func within(t *testing.T, f func(), msg string) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal(msg)
	}
}
