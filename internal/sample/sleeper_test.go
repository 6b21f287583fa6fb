package sample

import (
	"testing"
	"time"
)

// TestSleepers: each sleeper (the platform's and the portable one) fires
// no sooner than armed, and re-arming replaces the earlier time (an hour
// re-armed to 20 ms fires).
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
			<-s.C()
			if el := time.Since(t0); el < 20*time.Millisecond {
				t.Errorf("fired after %v, before the armed 20ms", el)
			}

			s.arm(time.Hour)
			s.arm(20 * time.Millisecond)
			select {
			case <-s.C():
			case <-time.After(10 * time.Second):
				t.Fatal("re-arming did not replace the earlier time")
			}
		})
	}
}
