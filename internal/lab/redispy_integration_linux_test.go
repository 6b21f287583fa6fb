//go:build linux

package lab

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationRedisPy runs a kill storm with redis-py (Debian's
// python3-redis, default pool and retry settings), 40 clients in 4
// instances (Python processes): every client completes PINGs again, and
// the connects are counted in the kernel.
func TestIntegrationRedisPy(t *testing.T) {
	sandboxtest.Require(t)
	requireRedisPy(t)
	const clients = 40
	res := runLab(t, Config{Spawn: &Spawn{}, Clients: clients, Instances: 4, Strategy: RedisPyStrategy, Scenario: "kill",
		Hold: 500 * time.Millisecond, Settle: 200 * time.Millisecond, Duration: 20 * time.Second})
	checkRecovered(t, res, clients)
	if res.KilledClients == nil || *res.KilledClients < 4 {
		t.Errorf("killed %v: the instances' pooled connections should have been killed", res.KilledClients)
	}
}

// TestIntegrationRedisPySetup: for each --setup, redis-py on a client host
// over TLS (verified against the run's CA) presents itself to Valkey as
// the setup says: CLIENT LIST shows its connection from the host's address
// with the setup's user, name and lib-name.
func TestIntegrationRedisPySetup(t *testing.T) {
	sandboxtest.Require(t)
	requireRedisPy(t)
	for _, setup := range Setups {
		t.Run(setup, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			r := prepareRun(ctx, t, Config{Spawn: &Spawn{}, TLS: true, Hosts: 2, Setup: setup, Clients: 2,
				Strategy: RedisPyStrategy, Scenario: "kill"})
			in, err := r.strategy.instance(ctx, r, 1) // process 1: on host 1
			if err != nil {
				t.Fatal(err)
			}
			defer in.close()
			p := in.(libInstance).p.(*redisPy)
			if err := p.ping(ctx); err != nil {
				t.Fatalf("redis-py PING over TLS: %v", err)
			}
			list, err := r.adm.clientList(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var line string
			for _, l := range strings.Split(list, "\n") {
				if strings.Contains(l, "cmd=ping") {
					line = l + " "
				}
			}
			want := map[string][]string{
				"none":  {" lib-name= ", " user=default "},
				"hello": {" lib-name=redis-py ", " user=default "},
				"auth":  {" user=" + labUser + " ", " name=" + labLib + " "},
			}[setup]
			want = append(want, " addr="+r.hostAddrs[1]+":")
			for _, w := range want {
				if !strings.Contains(line, w) {
					t.Errorf("setup %s: CLIENT LIST line %q lacks %q", setup, line, strings.TrimSpace(w))
				}
			}
		})
	}
}

// TestIntegrationRedisPyTLSAuthHosts: a TLS kill storm with --setup auth
// over two client hosts for redis-py: every client completes PINGs again
// (each reconnect a TLS handshake and an AUTH as the run's ACL user), and
// the reconnects are counted in the hosts' kernel counters.
func TestIntegrationRedisPyTLSAuthHosts(t *testing.T) {
	sandboxtest.Require(t)
	requireRedisPy(t)
	const clients = 40
	res := runLab(t, Config{Spawn: &Spawn{}, TLS: true, Hosts: 2, Setup: "auth", Clients: clients, Instances: 4,
		Strategy: RedisPyStrategy, Scenario: "kill", Hold: 500 * time.Millisecond, Settle: 200 * time.Millisecond,
		Duration: 20 * time.Second})
	checkRecovered(t, res, clients)
	if res.KilledClients == nil || *res.KilledClients < 4 {
		t.Errorf("killed %v: the instances' pooled connections should have been killed", res.KilledClients)
	}
	if !res.TLS || res.Setup != "auth" || res.Hosts != 2 || res.SourceAddrs != 2 {
		t.Errorf("tls %v setup %q hosts %d source_addrs %d: want TLS, auth, 2 hosts", res.TLS, res.Setup, res.Hosts, res.SourceAddrs)
	}
}

func requireRedisPy(t *testing.T) {
	t.Helper()
	if err := exec.Command(redisPyPython(), "-c", "import redis").Run(); err != nil {
		sandboxtest.SkipOrFail(t, "python3-redis is not installed (scripts/install-deps.sh)")
	}
}
