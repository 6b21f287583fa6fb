//go:build linux

package lab

import (
	"bufio"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationTLSOnly: a TLS run's server has no plaintext port and
// refuses a plaintext PING on its TLS port; a TLS client verified against
// the run's CA gets PONG.
func TestIntegrationTLSOnly(t *testing.T) {
	sandboxtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := prepareRun(ctx, t, Config{Spawn: &Spawn{}, TLS: true, Clients: 1, Strategy: "immediate", Scenario: "kill"})
	if !r.res.TLS {
		t.Fatal("result does not say TLS")
	}
	plain := r.dialer.from(netip.Addr{})
	if c, err := plain(ctx, "tcp", r.cfg.Target); err == nil {
		rc := &rawConn{c: c, r: bufio.NewReader(c)}
		if err := rc.ping(2 * time.Second); err == nil {
			t.Error("a plaintext PING on the TLS port got PONG")
		}
		c.Close()
	}
	rc, err := r.open(ctx, r.timedDial(0))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.c.Close()
	if err := rc.ping(5 * time.Second); err != nil {
		t.Fatalf("TLS PING: %v", err)
	}
}

// TestIntegrationTLSStorm: a TLS kill storm over client hosts with
// --setup auth recovers for the lab's client and both Go libraries.
func TestIntegrationTLSStorm(t *testing.T) {
	sandboxtest.Require(t)
	for _, s := range []string{"full-jitter", "go-redis", "valkey-go"} {
		res := runLab(t, Config{Spawn: &Spawn{}, TLS: true, Setup: "auth", Hosts: 2, Clients: 20, Instances: 4,
			Strategy: s, Scenario: "kill", Hold: 300 * time.Millisecond, Settle: 200 * time.Millisecond, Duration: 20 * time.Second})
		checkRecovered(t, res, 20)
		if !res.TLS || res.Setup != "auth" {
			t.Errorf("%s: tls %v setup %q", s, res.TLS, res.Setup)
		}
	}
}

// TestIntegrationSlow: the server stalls (SIGSTOP) for longer than the
// command timeout: PINGs time out, nobody can complete one until the stall
// ends, and the fleet recovers after it.
func TestIntegrationSlow(t *testing.T) {
	sandboxtest.Require(t)
	const stall = 1500 * time.Millisecond
	res := runLab(t, Config{Spawn: &Spawn{}, Clients: 20, Strategy: "glide", Scenario: "slow", Stall: stall,
		CommandTimeout: 500 * time.Millisecond, Hold: 500 * time.Millisecond, Duration: 20 * time.Second})
	if !res.Recovered || res.TimeToRecoverMS == nil || *res.TimeToRecoverMS < stall.Milliseconds() {
		t.Errorf("recovered %v after %v ms, want after the %s stall", res.Recovered, deref(res.TimeToRecoverMS), stall)
	}
	if res.FailedCommands == 0 {
		t.Error("no PING timed out during a stall three times the command timeout")
	}
	if res.GoodputMinRatio == nil || *res.GoodputMinRatio != 0 {
		t.Errorf("goodput_min_ratio %v, want 0 during the stall", res.GoodputMinRatio)
	}
}

// TestIntegrationSlowOutside: an outside server is stalled by DEBUG SLEEP
// over the admin connection (valkeyconn), which must outlast the command
// timeout of the admin's own commands; the fleet recovers after the stall.
func TestIntegrationSlowOutside(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--enable-debug-command", "yes"}})
	const stall = 1500 * time.Millisecond
	res := runLab(t, Config{Target: sb.Addr(), NetNS: sb.NetNS, Clients: 20, Strategy: "glide", Scenario: "slow", Stall: stall,
		CommandTimeout: 500 * time.Millisecond, Hold: 500 * time.Millisecond, Duration: 20 * time.Second})
	if !res.Recovered || res.TimeToRecoverMS == nil || *res.TimeToRecoverMS < stall.Milliseconds() {
		t.Errorf("recovered %v after %v ms, want after the %s stall", res.Recovered, deref(res.TimeToRecoverMS), stall)
	}
	if res.FailedCommands == 0 {
		t.Error("no PING timed out during a stall three times the command timeout")
	}
}

// TestIntegrationTLSIdleFleet: a TLS fleet that only PINGs loses no
// command before the disruption. Clients watch their connection between
// PINGs; a read on the TLS stream that runs into its deadline broke the
// next PING (half of them failed), so the watch must never read it.
func TestIntegrationTLSIdleFleet(t *testing.T) {
	sandboxtest.Require(t)
	for _, strategy := range []string{"immediate", "stormguard"} {
		t.Run(strategy, func(t *testing.T) {
			res := runLab(t, Config{Spawn: &Spawn{}, TLS: true, Clients: 20, Strategy: strategy, Scenario: "kill",
				Hold: 2 * time.Second, Settle: 200 * time.Millisecond, Duration: 20 * time.Second})
			checkRecovered(t, res, 20)
			for _, p := range res.TimelinePoints {
				if p.TMS+Bucket.Milliseconds() <= 0 && p.FailedCommands > 0 {
					t.Fatalf("%d commands failed at %d ms, before the kill: an idle TLS fleet must not lose commands", p.FailedCommands, p.TMS)
				}
			}
			if res.KilledClients == nil || *res.KilledClients < 20 || res.FailedCommands < 20 {
				t.Errorf("killed %v, failed commands %d: every client should see its connection closed", res.KilledClients, res.FailedCommands)
			}
		})
	}
}
