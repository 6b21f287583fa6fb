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
			derefU(res.ConnectionsReceived))
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
	p, err := newValkeyGlide(ctx, r)
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
