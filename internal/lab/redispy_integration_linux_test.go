//go:build linux

package lab

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/netip"
	"os"
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

// TestIntegrationRedisPyTLSTrustStore: in the environment the lab gives a
// redis-py process with --tls, the context redis-py builds per connection
// (ssl.create_default_context(), before it adds ssl_ca_certs) trusts the
// run's CA and nothing else, so it does not parse the system's trust store
// on every reconnect; and the variables it replaces are not duplicated.
func TestIntegrationRedisPyTLSTrustStore(t *testing.T) {
	requireRedisPy(t)
	rt, err := makeRunTLS([]netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.close()
	env, err := redisPyTLSEnv(append(os.Environ(), "SSL_CERT_FILE=/nonexistent", "SSL_CERT_DIR=/nonexistent"), rt)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"SSL_CERT_FILE=", "SSL_CERT_DIR="} {
		n := 0
		for _, kv := range env {
			if strings.HasPrefix(kv, name) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s appears %d times in the environment, want once", name, n)
		}
	}
	cmd := exec.Command(redisPyPython(), "-c", `import json, ssl
c = ssl.create_default_context()
print(json.dumps([c.cert_store_stats(), [dict(x[0] for x in ca["subject"]) for ca in c.get_ca_certs()]]))`)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var got []json.RawMessage
	if err := json.Unmarshal(out, &got); err != nil || len(got) != 2 {
		t.Fatalf("python3 printed %q: %v", out, err)
	}
	var stats map[string]int
	var subjects []map[string]string
	if err := json.Unmarshal(got[0], &stats); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got[1], &subjects); err != nil {
		t.Fatal(err)
	}
	if stats["x509_ca"] != 1 || len(subjects) != 1 {
		t.Fatalf("default context trusts %v (%v), want only the run's CA", stats, subjects)
	}
	caPEM, err := os.ReadFile(rt.ca)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(caPEM)
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cn := subjects[0]["commonName"]; cn != ca.Subject.CommonName {
		t.Errorf("default context trusts %q, want the run's CA %q", cn, ca.Subject.CommonName)
	}
}
