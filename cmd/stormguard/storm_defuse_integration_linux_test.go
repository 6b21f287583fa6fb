//go:build linux

package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/lab"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationStormDefuseAuto: `storm --defuse auto` end to end, on the
// metastable storm's shape (TLS, clients on their own hosts, 250 ms
// connect+handshake timeout, immediate redial, CLIENT KILL of all) made
// small and certain to overflow (somaxconn 8). The outcomes, not how fast:
// the agent declares the storm and arms both default actions — the
// per-source limit and the admission limit, which leaves this host's own
// connections out — nothing fails to arm, everything it armed is reverted
// by the end of the run, and no command fails besides those the kill
// itself failed (the limits match connection-opening SYNs only; a 10 s
// PING timeout keeps a slow machine from failing PINGs that were not cut).
func TestIntegrationStormDefuseAuto(t *testing.T) {
	sandboxtest.Require(t)
	code, msg, out := runStormCLI(t, "storm", "--spawn", "--tls", "--hosts", "2", "--somaxconn", "8",
		"--clients", "200", "--strategy", "immediate", "--connect-timeout", "250ms", "--warmup-connect-timeout", "5s",
		"--period", "100ms", "--command-timeout", "10s", "--ramp", "200", "--scenario", "kill", "--hold", "2s", "--duration", "20s",
		"--warmup-timeout", "2m", "--defuse", "auto", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	var res lab.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output: %v\n%s", err, out)
	}
	type event struct {
		Type, To, Action, Reason string
		Mitigation               struct {
			ID, Action, Rate string
			Notes            []string
		}
	}
	var storm bool
	applied, reverted := map[string]string{}, map[string]bool{}
	for _, e := range res.AgentEvents {
		var ev event
		if err := json.Unmarshal(e.Event, &ev); err != nil {
			t.Fatal(err)
		}
		t.Logf("%+6d ms %s %s%s %s %s %s", e.TMS, ev.Type, ev.To, ev.Action, ev.Mitigation.Action, ev.Mitigation.Rate, ev.Reason)
		switch {
		case ev.Type == "state" && ev.To == "storm":
			storm = true
		case ev.Type == "defuse" && ev.Action == "failed":
			t.Errorf("an arming failed: %s", ev.Reason)
		case ev.Type == "defuse" && ev.Action == "applied":
			applied[ev.Mitigation.ID] = ev.Mitigation.Action
			if ev.Mitigation.Action == "ratelimit-global" && !strings.Contains(strings.Join(ev.Mitigation.Notes, "; "), "loopback") {
				t.Errorf("admission limit without the loopback exemption: %v", ev.Mitigation.Notes)
			}
		case ev.Type == "defuse" && ev.Action == "reverted":
			reverted[ev.Mitigation.ID] = true
		}
	}
	if !storm {
		t.Fatalf("the agent never declared the storm (listen overflows %v)", res.ListenOverflows)
	}
	kinds := map[string]bool{}
	for id, a := range applied {
		kinds[a] = true
		if !reverted[id] {
			t.Errorf("%s %s armed and never reverted", a, id)
		}
	}
	if !kinds["ratelimit-syn"] || !kinds["ratelimit-global"] {
		t.Errorf("armed %v, want ratelimit-syn and ratelimit-global", kinds)
	}
	if res.KilledClients == nil || res.FailedCommands > *res.KilledClients {
		t.Errorf("failed commands %d, killed clients %v: a command failed besides the kill's", res.FailedCommands, res.KilledClients)
	}
}
