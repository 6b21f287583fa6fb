//go:build glide && cgo && linux

package lab

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	glide "github.com/valkey-io/valkey-glide/go/v2"
	"github.com/valkey-io/valkey-glide/go/v2/config"

	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// TestIntegrationGlideKill: a small kill storm with GLIDE's Go client, 50
// clients in 5 instances (5 GLIDE clients): every client recovers, and the
// connects counted from the kernel agree with what Valkey accepted.
func TestIntegrationGlideKill(t *testing.T) {
	sb := newServer(t, 4096)
	const clients, instances = 50, 5
	res := runLab(t, Config{Target: sb.Addr(), NetNS: sb.NetNS, Clients: clients, Instances: instances,
		Strategy: GLIDEStrategy, Scenario: "kill", Hold: time.Second, Duration: 20 * time.Second})
	checkRecovered(t, res, clients)
	if res.KilledClients == nil || *res.KilledClients < instances {
		t.Errorf("CLIENT KILL killed %v, want ≥ %d (one GLIDE connection per instance)", deref(res.KilledClients), instances)
	}
	if res.WarmupConnectAttempts < instances {
		t.Errorf("warm-up: %d connects counted for %d GLIDE clients", res.WarmupConnectAttempts, instances)
	}
	// Every connect either failed or was accepted by Valkey: the kernel's
	// count (ActiveOpens − AttemptFails, admin connection subtracted)
	// must equal Valkey's total_connections_received delta.
	if res.ConnectionsReceived == nil || res.ConnectAttempts-res.ConnectFailures != int64(*res.ConnectionsReceived) {
		t.Errorf("kernel: %d connects, %d failed; Valkey received %v", res.ConnectAttempts, res.ConnectFailures,
			deref(res.ConnectionsReceived))
	}
	if !strings.HasPrefix(res.ConnectsSource, "kernel:") || !strings.Contains(res.ConnectsSource, sb.NetNS) {
		t.Errorf("connects_source %q does not name the kernel counters of %s", res.ConnectsSource, sb.NetNS)
	}
	var sum int64
	for _, v := range res.Timeline {
		sum += v
	}
	if sum != res.ConnectAttempts {
		t.Errorf("timeline sums to %d, connect_attempts %d", sum, res.ConnectAttempts)
	}
	if res.Errors["connect_attempts"] != "" {
		t.Errorf("kernel counters failed: %s", res.Errors["connect_attempts"])
	}
}

// glideThreads returns the Linux thread ids of GLIDE's runtime threads
// ("Valkey-GLIDE Go thread", truncated to 15 bytes in comm) and the network
// namespace each is in.
func glideThreads(t *testing.T) map[string]string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, task := range tasks {
		comm, err := os.ReadFile(filepath.Join(task, "comm"))
		if err != nil || !strings.HasPrefix(string(comm), "Valkey-GLIDE") {
			continue // gone, or not GLIDE's
		}
		ns, err := os.Readlink(filepath.Join(task, "ns/net"))
		if err != nil {
			continue
		}
		out[filepath.Base(task)] = ns
	}
	return out
}

// nsID is the "net:[inode]" a thread's ns/net link shows for the
// namespace file at path.
func nsID(t *testing.T, path string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return "net:[" + strconv.FormatUint(st.Ino, 10) + "]"
}

// TestIntegrationGlideSocketsInNamespace: GLIDE's Rust core opens its
// sockets on a runtime thread NewClient starts; creating the client on a
// thread inside the server's namespace puts that thread, and so the first
// connection and every later reconnect, in the namespace. The server
// listens only inside it, so a socket made outside could not reach it.
func TestIntegrationGlideSocketsInNamespace(t *testing.T) {
	sb := newServer(t, 4096)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snmp, err := openTCPSNMP(sb.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	defer snmp.close()
	opens := func() uint64 {
		tcp, err := snmp.read()
		if err != nil {
			t.Fatal(err)
		}
		return tcp["ActiveOpens"]
	}

	before := glideThreads(t)
	o0 := opens()
	r := &run{cfg: Config{Target: sb.Addr(), NetNS: sb.NetNS}.withDefaults()}
	p, err := newValkeyGlide(ctx, r, sb.NetNS)
	if err != nil {
		t.Fatalf("GLIDE client in %s: %v", sb.NetNS, err)
	}
	defer p.close()
	if err := p.ping(ctx); err != nil {
		t.Fatal(err)
	}
	want := nsID(t, sb.NetNS)
	fresh := 0
	for tid, ns := range glideThreads(t) {
		if _, old := before[tid]; old {
			continue
		}
		fresh++
		if ns != want {
			t.Errorf("GLIDE runtime thread %s is in %s, not the server's %s", tid, ns, want)
		}
	}
	if fresh == 0 {
		t.Error("no GLIDE runtime thread appeared for the new client")
	}
	o1 := opens()
	if o1 <= o0 {
		t.Errorf("ActiveOpens in the namespace did not move (%d → %d) when GLIDE connected", o0, o1)
	}

	// The server sees GLIDE's connection (lib-name GlideGo) inside the
	// namespace; killing it makes GLIDE reconnect, again from there.
	adm := &admin{ep: valkeyconn.Endpoint{Addr: sb.Addr(),
		Dial: func(ctx context.Context, _ *net.Dialer) (net.Conn, error) { return sb.Dial(ctx) }}}
	defer adm.close()
	list, err := adm.clientList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, "lib-name=GlideGo") {
		t.Fatalf("Valkey in the namespace sees no GLIDE connection:\n%s", list)
	}
	o2 := opens() // the admin connection is in the namespace too
	if n, err := adm.killNormal(ctx); err != nil || n < 1 {
		t.Fatalf("CLIENT KILL: %d killed, %v", n, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for opens() <= o2 || p.ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("GLIDE did not reconnect inside the namespace within 20s (ActiveOpens %d → %d)", o2, opens())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIntegrationGlideTLSAuthHosts: a TLS kill storm with --setup auth over
// two client hosts for GLIDE's client: GLIDE verifies the server against
// the run's CA (its root certificates, not the platform's trust store),
// every client completes PINGs again (each reconnect a TLS handshake and
// an AUTH as the run's ACL user), and the reconnects are counted in the
// hosts' kernel counters.
func TestIntegrationGlideTLSAuthHosts(t *testing.T) {
	sandboxtest.Require(t)
	const clients, instances = 20, 4
	res := runLab(t, Config{Spawn: &Spawn{}, TLS: true, Hosts: 2, Setup: "auth", Clients: clients, Instances: instances,
		Strategy: GLIDEStrategy, Scenario: "kill", Hold: 500 * time.Millisecond, Settle: 200 * time.Millisecond,
		Duration: 20 * time.Second})
	checkRecovered(t, res, clients)
	if res.KilledClients == nil || *res.KilledClients < instances {
		t.Errorf("CLIENT KILL killed %v, want ≥ %d (one GLIDE connection per instance)", deref(res.KilledClients), instances)
	}
	if !res.TLS || res.Setup != "auth" || res.Hosts != 2 || res.SourceAddrs != 2 {
		t.Errorf("tls %v setup %q hosts %d source_addrs %d: want TLS, auth, 2 hosts", res.TLS, res.Setup, res.Hosts, res.SourceAddrs)
	}
	if !strings.Contains(res.ConnectsSource, "kernel:") {
		t.Errorf("connects_source %q: want the kernel counters", res.ConnectsSource)
	}
}

// TestIntegrationGlideSocketsOnHosts: with client hosts, instance k's GLIDE
// client is created on a thread inside host k's namespace, so its runtime
// thread and every socket it opens are there: over TLS, three instances on
// three hosts reach Valkey from the three hosts' addresses, each host's
// own kernel counters count its connect, the runtime threads are in the
// hosts' namespaces, and after CLIENT KILL each reconnects from its host
// again. A GLIDE client without the run's CA (the platform's trust store)
// is refused: GLIDE verifies the server, against the CA the lab gives it.
func TestIntegrationGlideSocketsOnHosts(t *testing.T) {
	sandboxtest.Require(t)
	const hosts = 3
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	r := prepareRun(ctx, t, Config{Spawn: &Spawn{}, TLS: true, Hosts: hosts, Clients: hosts,
		Strategy: GLIDEStrategy, Scenario: "kill"})
	// Each host's counters on their own (openTCPSNMP sums what it is given).
	snmp := make([]*tcpSNMP, hosts)
	opens := func(k int) uint64 {
		tcp, err := snmp[k].read()
		if err != nil {
			t.Fatal(err)
		}
		return tcp["ActiveOpens"]
	}
	o0 := make([]uint64, hosts)
	for k := range hosts {
		s, err := openTCPSNMP(r.hostNetNS[k])
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		snmp[k] = s
		o0[k] = opens(k)
	}

	before := glideThreads(t)
	ps := make([]pinger, hosts)
	for k := range hosts {
		in, err := r.strategy.instance(ctx, r, k)
		if err != nil {
			t.Fatalf("instance %d (host %s): %v", k, r.hostAddrs[k], err)
		}
		defer in.close()
		ps[k] = in.(libInstance).p
		if err := ps[k].ping(ctx); err != nil {
			t.Fatalf("instance %d: PING over TLS: %v", k, err)
		}
	}
	wantNS := map[string]bool{}
	for k := range hosts {
		wantNS[nsID(t, r.hostNetNS[k])] = true
		if o := opens(k); o <= o0[k] {
			t.Errorf("host %d (%s): ActiveOpens did not move (%d → %d) when its GLIDE client connected", k, r.hostAddrs[k], o0[k], o)
		}
	}
	seenNS := map[string]bool{}
	for tid, ns := range glideThreads(t) {
		if _, old := before[tid]; old {
			continue
		}
		seenNS[ns] = true
		if !wantNS[ns] {
			t.Errorf("GLIDE runtime thread %s is in %s, not a client host's namespace", tid, ns)
		}
	}
	if len(seenNS) != hosts {
		t.Errorf("GLIDE runtime threads in %d hosts' namespaces, want %d", len(seenNS), hosts)
	}
	checkGlideAddrs(ctx, t, r)

	// CLIENT KILL: every client reconnects, again from its own host.
	o1 := make([]uint64, hosts)
	for k := range hosts {
		o1[k] = opens(k)
	}
	if n, err := r.adm.killNormal(ctx); err != nil || n < hosts {
		t.Fatalf("CLIENT KILL: %d killed, %v", n, err)
	}
	for k := range hosts {
		deadline := time.Now().Add(20 * time.Second)
		for opens(k) <= o1[k] || ps[k].ping(ctx) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("host %d: GLIDE did not reconnect from its host within 20s (ActiveOpens %d → %d)", k, o1[k], opens(k))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	checkGlideAddrs(ctx, t, r)

	// Without the run's CA GLIDE uses the platform's trust store, which
	// does not know the run's CA: the client cannot be created.
	a, err := glideAddr(r.cfg.Target)
	if err != nil {
		t.Fatal(err)
	}
	err = netns.Do(r.hostNetNS[0], func() error {
		c, err := glide.NewClient(config.NewClientConfiguration().WithAddress(a).WithUseTLS(true))
		if err == nil {
			c.Close()
		}
		return err
	})
	if err == nil {
		t.Error("a GLIDE client without the run's CA connected: the server's certificate was not verified")
	}
}

// checkGlideAddrs checks that Valkey lists exactly one GLIDE connection
// from each client host's address.
func checkGlideAddrs(ctx context.Context, t *testing.T, r *run) {
	t.Helper()
	list, err := r.adm.clientList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	from := map[string]int{}
	for _, l := range strings.Split(list, "\n") {
		if !strings.Contains(l, "lib-name=GlideGo") {
			continue
		}
		for _, f := range strings.Fields(l) {
			if a, ok := strings.CutPrefix(f, "addr="); ok {
				host, _, _ := net.SplitHostPort(a)
				from[host]++
			}
		}
	}
	for _, h := range r.hostAddrs {
		if from[h] != 1 {
			t.Errorf("Valkey lists %d GLIDE connections from host %s, want 1 (all: %v)", from[h], h, from)
		}
	}
	if len(from) != len(r.hostAddrs) {
		t.Errorf("GLIDE connections from %v, want one from each of %v", from, r.hostAddrs)
	}
}

// TestIntegrationGlideFailover: GLIDE's standalone client in the failover
// scenario. GLIDE redials the address it was given from its Rust core, so
// the lab moves the service address in the kernel (redirectService, as for
// redis-py): every client must complete PINGs again, which only the
// promoted replica can answer; on loopback, and over TLS with AUTH from two
// client hosts (the redirect on prerouting).
func TestIntegrationGlideFailover(t *testing.T) {
	sandboxtest.Require(t)
	for _, tc := range []struct {
		name  string
		tls   bool
		hosts int
		setup string
	}{
		{name: "loopback"},
		{name: "tls-hosts-auth", tls: true, hosts: 2, setup: "auth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const clients = 20
			res := runLab(t, Config{Spawn: &Spawn{}, TLS: tc.tls, Hosts: tc.hosts, Setup: tc.setup, Clients: clients, Instances: 4,
				Strategy: GLIDEStrategy, Scenario: "failover", Hold: 300 * time.Millisecond, Settle: 200 * time.Millisecond,
				Duration: 20 * time.Second})
			checkRecovered(t, res, clients)
			if !strings.HasSuffix(res.FailoverTo, ":6380") || res.PromoteMS == nil {
				t.Errorf("failover_to %q, promote_ms %v: want the replica on :6380 promoted", res.FailoverTo, res.PromoteMS)
			}
			// Without hosts the replica's reconnects are in the
			// counted namespace, and the result says so.
			if got := strings.Contains(res.ConnectsSource, connectsFromKernelFailover); got != (tc.hosts == 0) {
				t.Errorf("hosts %d: connects_source %q", tc.hosts, res.ConnectsSource)
			}
		})
	}
}

// TestIntegrationGlideClusterFailover: GLIDE's ClusterClient in the
// cluster failover scenario (over TLS, cluster bus and replication too,
// from two client hosts, every connection authenticating as the run's ACL
// user): the primary of the slot every client reads is SIGKILLed, the
// cluster promotes its replica by itself, and every GLIDE client must
// complete reads again, which only the promoted replica can serve.
func TestIntegrationGlideClusterFailover(t *testing.T) {
	sandboxtest.Require(t)
	const clients = 20
	res := runLab(t, Config{Spawn: &Spawn{}, Cluster: true, TLS: true, Hosts: 2, Setup: "auth",
		Clients: clients, Instances: 4, Strategy: GLIDEStrategy, Scenario: "failover",
		Hold: 300 * time.Millisecond, Settle: 200 * time.Millisecond, Duration: 20 * time.Second})
	checkRecovered(t, res, clients)
	if !strings.HasPrefix(res.FailoverTo, "10.77.0.1:700") || res.PromoteMS == nil {
		t.Errorf("failover_to %q, promote_ms %v: want a replica on 10.77.0.1:700x promoted", res.FailoverTo, res.PromoteMS)
	}
}
