//go:build glide && cgo && linux

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/lab"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestGlideNeedsNamespace: with GLIDE built in, the strategy still needs
// a namespace whose kernel counters it can read, and TLS only with the
// run's own server.
func TestGlideNeedsNamespace(t *testing.T) {
	code, msg, out := runStormCLI(t, "storm", "--target", "127.0.0.1:6379", "--clients", "5", "--strategy", "valkey-glide")
	if code != exitUsage || out != "" || !strings.Contains(msg, "--netns") || strings.Contains(msg, "build-glide") {
		t.Fatalf("exit %d, message %q, stdout %q", code, msg, out)
	}
	// Over TLS only against --spawn's server, whose CA GLIDE is given:
	// exit 2 with one line.
	code, msg, out = runStormCLI(t, "storm", "--target", "valkeys://127.0.0.1:6379", "--netns", "/proc/self/ns/net",
		"--clients", "5", "--strategy", "valkey-glide")
	if code != exitUsage || out != "" || !strings.Contains(msg, "--spawn") || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
		t.Fatalf("TLS to an outside server: exit %d, message %q, stdout %q", code, msg, out)
	}
	var notice bytes.Buffer
	got, err := stormStrategies(stormOpts{compare: "all", notice: &notice})
	if err != nil || len(got) != len(lab.Strategies()) || got[len(got)-1] != lab.GLIDEStrategy || notice.Len() != 0 {
		t.Fatalf("--compare all with GLIDE built in: %v %v, notice %q", got, err, notice.String())
	}
}

// TestIntegrationGlideCompareSpawn: the real GLIDE client next to a lab
// strategy through the CLI: stdout is exactly one JSON array (GLIDE's
// Rust logger must not write to it), valkey-glide comes last, recovers
// fully, and says its connects come from the kernel.
func TestIntegrationGlideCompareSpawn(t *testing.T) {
	sandboxtest.Require(t)
	code, msg, out := runStormCLI(t, "storm", "--spawn", "--clients", "40", "--instances", "4",
		"--compare", "immediate,valkey-glide", "--scenario", "kill", "--hold", "500ms", "--settle", "300ms", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	var rs []lab.Result
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("stdout is not one JSON array: %v\n%s", err, out)
	}
	if len(rs) != 2 || rs[1].Strategy != lab.GLIDEStrategy {
		t.Fatalf("got %d results: %s", len(rs), out)
	}
	g := rs[1]
	t.Logf("valkey-glide: %+v", g)
	if g.RecoveredClients != 40 || g.TimeToRecoverMS == nil {
		t.Errorf("%d of 40 recovered, time_to_recover_ms %v", g.RecoveredClients, g.TimeToRecoverMS)
	}
	if g.ConnectAttempts < 4 || !strings.HasPrefix(g.ConnectsSource, "kernel:") {
		t.Errorf("connect_attempts %d from %q, want ≥ 4 from the kernel", g.ConnectAttempts, g.ConnectsSource)
	}
	if rs[0].ConnectsSource != lab.ConnectsFromHook {
		t.Errorf("immediate's connects_source %q", rs[0].ConnectsSource)
	}
}
