package lab

import (
	"os"
	"testing"

	"github.com/stormguard/stormguard/internal/sandbox"
)

// TestMain lets the test binary serve as the delay line's relay process
// (--rtt without netem), as the stormguard binary does.
func TestMain(m *testing.M) {
	sandbox.ServeDelayLine()
	os.Exit(m.Run())
}
