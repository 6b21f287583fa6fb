// Package sandboxtest gives integration tests a sandbox (a network namespace
// with a real valkey-server) with the project's skip rule: without root or
// valkey-server the test is skipped with the reason, unless
// STORMGUARD_REQUIRE_INTEGRATION=1 (set by .ci/run), which turns the skip
// into a failure so CI can never pass by skipping.
package sandboxtest

import (
	"context"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/stormguard/stormguard/internal/sandbox"
)

// RequireEnv is the variable that turns skips into failures.
const RequireEnv = "STORMGUARD_REQUIRE_INTEGRATION"

// Required reports whether integration tests must run (RequireEnv=1, as
// CI sets it): then nothing they need may be missing.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// SkipOrFail is the one skip-or-fail rule: it skips the test saying why
// (a tool, a device or privileges this machine lacks), or fails it under
// RequireEnv=1, so CI never passes by skipping.
func SkipOrFail(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s (%s=1)", why, RequireEnv)
	}
	t.Skipf("%s (set %s=1 to make this a failure)", why, RequireEnv)
}

// Require skips (or fails, under RequireEnv=1) when sandboxes cannot be made
// here, and also when -short is given.
func Require(t testing.TB) {
	t.Helper()
	if err := sandbox.Available(); err != nil {
		SkipOrFail(t, "integration test cannot run: "+err.Error())
	}
	if testing.Short() && !Required() {
		t.Skip("integration test skipped in -short mode")
	}
}

// New makes a sandbox that is removed when the test ends, even if it fails
// or panics.
func New(t testing.TB, opts sandbox.Options) *sandbox.Sandbox {
	t.Helper()
	Require(t)
	sb, err := sandbox.New(context.Background(), opts)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("sandbox cleanup: %v", err)
		}
	})
	return sb
}

// Freeze stops sb's valkey-server (SIGSTOP): it accepts and answers
// nothing while the kernel keeps completing handshakes into its accept
// queue, the project's usual way to make a storm. The returned thaw
// (SIGCONT) may be called any number of times; it also runs when the test
// ends, before the sandbox is removed (a failed thaw is reported only when
// called by the test: at cleanup the server may already be gone).
func Freeze(t testing.TB, sb *sandbox.Sandbox) (thaw func()) {
	t.Helper()
	if err := sb.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("freeze valkey-server: %v", err)
	}
	var once sync.Once
	cont := func() error {
		var err error
		once.Do(func() { err = sb.Signal(syscall.SIGCONT) })
		return err
	}
	t.Cleanup(func() { _ = cont() })
	return func() {
		if err := cont(); err != nil {
			t.Errorf("thaw valkey-server: %v", err)
		}
	}
}
