//go:build linux

package lab

import (
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationFailover kills the primary of a primary + replica pair
// and checks that the lab promoted the replica and that every client — a
// lab strategy, go-redis and valkey-go with their defaults — completed
// PINGs again. Only the promoted replica can answer them: the old primary
// is dead and never restarted.
func TestIntegrationFailover(t *testing.T) {
	sandboxtest.Require(t)
	for _, tc := range []struct {
		strategy string
		tls      bool
		hosts    int
		setup    string
	}{
		{strategy: "immediate"},
		{strategy: "go-redis"},
		{strategy: "valkey-go"},
		{strategy: "full-jitter", tls: true, hosts: 2},
		// The replica loads the run's ACL file: every reconnect to
		// the promoted replica authenticates as the run's user.
		{strategy: "go-redis", tls: true, hosts: 2, setup: "auth"},
		// redis-py dials the address it was given by itself: the lab
		// moves the service address in the kernel (redirectService),
		// on loopback (output hook) and from client hosts (prerouting).
		{strategy: RedisPyStrategy},
		{strategy: RedisPyStrategy, tls: true, hosts: 2, setup: "auth"},
	} {
		name := tc.strategy
		if tc.setup != "" {
			name += "-" + tc.setup
		}
		t.Run(name, func(t *testing.T) {
			if tc.strategy == RedisPyStrategy {
				requireRedisPy(t)
			}
			const clients = 30
			res := runLab(t, Config{Spawn: &Spawn{}, TLS: tc.tls, Hosts: tc.hosts, Setup: tc.setup, Clients: clients, Strategy: tc.strategy,
				Scenario: "failover", Hold: 300 * time.Millisecond, Settle: 200 * time.Millisecond, Duration: 20 * time.Second})
			checkRecovered(t, res, clients)
			if !strings.HasSuffix(res.FailoverTo, ":6380") || res.PromoteMS == nil {
				t.Errorf("failover_to %q, promote_ms %v: want the replica on :6380 promoted", res.FailoverTo, res.PromoteMS)
			}
			if !res.ValkeyCountersReset {
				t.Error("valkey_counters_reset is false: the counters after a failover are the new primary's")
			}
		})
	}
}

// TestIntegrationClusterFailover runs the failover scenario on a 3-shard
// cluster: the primary of the slot every client reads is SIGKILLed, the
// cluster itself promotes its replica (the lab sends no failover
// command), and valkey-go's cluster client must complete reads again,
// which only the promoted replica can serve; once on loopback, once over
// TLS (cluster bus and replication too) from two client hosts with every
// connection authenticating as the run's ACL user. go-redis's
// ClusterClient is not here: with its defaults it does not reload the
// topology before its 60 s state reload interval, longer than a test in
// make test should run (docs/lab.md; bench/storm.sh part 6 runs it).
func TestIntegrationClusterFailover(t *testing.T) {
	sandboxtest.Require(t)
	for _, tc := range []struct {
		name  string
		tls   bool
		hosts int
		setup string
		addr  string // the promoted replica's address prefix
	}{
		{name: "valkey-go", addr: "127.0.0.1:700"},
		{name: "valkey-go-tls-hosts-auth", tls: true, hosts: 2, setup: "auth", addr: "10.77.0.1:700"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const clients = 20
			res := runLab(t, Config{Spawn: &Spawn{}, Cluster: true, TLS: tc.tls, Hosts: tc.hosts, Setup: tc.setup,
				Clients: clients, Instances: 4, Strategy: "valkey-go", Scenario: "failover",
				Hold: 300 * time.Millisecond, Settle: 200 * time.Millisecond, Duration: 20 * time.Second})
			checkRecovered(t, res, clients)
			if !strings.HasPrefix(res.FailoverTo, tc.addr) || res.PromoteMS == nil {
				t.Errorf("failover_to %q, promote_ms %v: want a replica on %sx promoted", res.FailoverTo, res.PromoteMS, tc.addr)
			}
			if res.TLS != tc.tls || res.Hosts != tc.hosts {
				t.Errorf("tls %v hosts %d: want %v, %d", res.TLS, res.Hosts, tc.tls, tc.hosts)
			}
		})
	}
}
