package main

import (
	"os"
	"testing"

	"github.com/stormguard/stormguard/internal/sandbox"
)

// TestMain lets tests re-run this binary as the stormguard command (for
// example as an unprivileged user): with STORMGUARD_TEST_MAIN=1 it runs
// main instead of the tests.
func TestMain(m *testing.M) {
	sandbox.ServeDelayLine()
	if os.Getenv("STORMGUARD_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}
