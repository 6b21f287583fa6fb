package sample

import (
	"testing"
	"time"
)

// TestSleepers: each sleeper (the platform's and the portable one) sleeps
// until it is due, returns at once for a poke made after arming (the
// wake-up Run must not sleep through), and shrugs off a poke after close.
func TestSleepers(t *testing.T) {
	for _, tc := range []struct {
		name string
		new  func() sleeper
	}{{"platform", newSleeper}, {"portable", func() sleeper { return newChanSleeper() }}} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.new()
			t0 := time.Now()
			s.arm(20 * time.Millisecond)
			s.block()
			if el := time.Since(t0); el < 20*time.Millisecond {
				t.Errorf("woke after %v, before the armed 20ms", el)
			}

			s.arm(time.Hour)
			s.poke()
			done := make(chan struct{})
			go func() { s.block(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("a poke after arming did not end the sleep")
			}

			s.arm(time.Hour)
			done = make(chan struct{})
			go func() { s.block(); close(done) }()
			time.Sleep(10 * time.Millisecond)
			s.poke()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("a poke during the sleep did not end it")
			}
			s.close()
			s.poke()
		})
	}
}
