//go:build linux

package main

import (
	"encoding/json"
	"testing"

	"github.com/stormguard/stormguard/internal/lab"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationStormRestartSpawn: the restart scenario end to end through
// the CLI with a lab-owned server: the contract keys are present, every
// client comes back, and recovery cannot be faster than the downtime.
func TestIntegrationStormRestartSpawn(t *testing.T) {
	sandboxtest.Require(t)
	code, msg, out := runStormCLI(t, "storm", "--spawn", "--clients", "50", "--strategy", "full-jitter",
		"--scenario", "restart", "--down", "500ms", "--hold", "500ms", "--duration", "20s", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"strategy", "clients", "connect_attempts", "connect_failures",
		"peak_connects_per_sec", "time_to_recover_ms", "failed_commands", "listen_overflows"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("contract key %q missing", k)
		}
	}
	var res lab.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart: %+v", res)
	if res.RecoveredClients != 50 {
		t.Errorf("%d of 50 clients recovered", res.RecoveredClients)
	}
	if res.TimeToRecoverMS == nil || *res.TimeToRecoverMS < 500 {
		t.Errorf("time_to_recover_ms %v, want ≥ the 500ms the server was down", res.TimeToRecoverMS)
	}
	if res.ConnectAttempts < 50 {
		t.Errorf("%d connect attempts for 50 clients", res.ConnectAttempts)
	}
	if !res.ValkeyCountersReset || res.ConnectionsReceived == nil || *res.ConnectionsReceived < 50 {
		t.Errorf("after a restart Valkey's counters start again: reset=%v received=%v", res.ValkeyCountersReset, res.ConnectionsReceived)
	}
}

// TestIntegrationStormCompareJSON: --compare --json prints an array, one
// object per strategy in order, each with a fresh server.
func TestIntegrationStormCompareJSON(t *testing.T) {
	sandboxtest.Require(t)
	code, msg, out := runStormCLI(t, "storm", "--spawn", "--clients", "20", "--compare", "immediate,glide",
		"--scenario", "kill", "--hold", "300ms", "--settle", "200ms", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	var rs []lab.Result
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("--compare --json is not an array: %v\n%s", err, out)
	}
	if len(rs) != 2 || rs[0].Strategy != "immediate" || rs[1].Strategy != "glide" {
		t.Fatalf("got %d results: %s", len(rs), out)
	}
	for _, r := range rs {
		if r.RecoveredClients != 20 {
			t.Errorf("%s: %d of 20 recovered", r.Strategy, r.RecoveredClients)
		}
	}
}
