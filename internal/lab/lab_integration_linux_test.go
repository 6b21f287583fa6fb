//go:build linux

package lab

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

func newServer(t *testing.T, somaxconn int) *sandbox.Sandbox {
	t.Helper()
	sb := sandboxtest.New(t, sandbox.Options{
		Sysctls:    map[string]string{"net.core.somaxconn": strconv.Itoa(somaxconn)},
		ValkeyArgs: []string{"--maxclients", "4000"},
	})
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(sb.LogPath())
			ss, _ := sb.Command(context.Background(), "ss", "-ltnp").CombinedOutput()
			t.Logf("valkey-server pid %d alive=%v ping=%v\nlisteners:\n%s\nlog:\n%s", sb.ValkeyPID(),
				syscall.Kill(sb.ValkeyPID(), 0) == nil, sb.Ping(context.Background()), ss, b)
		}
	})
	return sb
}

// prepareRun makes a run of c and prepares it (server, dialer, admin
// connection) as Run does before the clients start; it is closed when the
// test ends.
func prepareRun(ctx context.Context, t *testing.T, c Config) *run {
	t.Helper()
	r, err := newRun(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	if err := r.prepare(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

func runLab(t *testing.T, c Config) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := RaiseFDLimit(FDsNeeded(c)); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, c)
	if err != nil {
		t.Fatalf("%s/%s: %v", c.Strategy, c.Scenario, err)
	}
	t.Logf("%s/%s: attempts %d failures %d peak %d/s ttr %v overflows %v failed cmds %d rejected %v",
		res.Strategy, res.Scenario, res.ConnectAttempts, res.ConnectFailures, res.PeakConnectsPerSec,
		deref(res.TimeToRecoverMS), deref(res.ListenOverflows), res.FailedCommands, deref(res.RejectedConnections))
	return res
}

// deref is *p for printing, nil when p is.
func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// checkRecovered asserts what every disruption must produce.
func checkRecovered(t *testing.T, res *Result, clients int) {
	t.Helper()
	conns := clients
	if res.Strategy == "go-redis" || res.Strategy == "valkey-go" || res.Strategy == GLIDEStrategy || res.Strategy == RedisPyStrategy {
		// An instance's goroutines share the library's connections
		// (valkey-go multiplexes all of them over one).
		conns = res.Instances
	}
	if res.ConnectAttempts < int64(conns) {
		t.Errorf("%s: %d connect attempts for %d lost connections", res.Strategy, res.ConnectAttempts, conns)
	}
	if res.RecoveredClients != clients {
		t.Errorf("%s: %d of %d clients recovered", res.Strategy, res.RecoveredClients, clients)
	}
	if res.TimeToRecoverMS == nil || *res.TimeToRecoverMS <= 0 {
		t.Errorf("%s: time_to_recover_ms = %v, want > 0", res.Strategy, deref(res.TimeToRecoverMS))
	}
	if res.ListenOverflows == nil {
		t.Errorf("%s: listen_overflows unavailable: %v", res.Strategy, res.Errors)
	}
	if res.ConnectionsReceived == nil || *res.ConnectionsReceived < uint64(conns) {
		t.Errorf("%s: Valkey saw %v new connections, want ≥ %d", res.Strategy, deref(res.ConnectionsReceived), conns)
	}
	if res.PeakConnectsPerSec <= 0 || len(res.Timeline) == 0 {
		t.Errorf("%s: empty connect timeline", res.Strategy)
	}
}

// TestIntegrationKill: ~200 clients killed at somaxconn 128, immediate vs
// the stormguard dialer.
func TestIntegrationKill(t *testing.T) {
	sb := newServer(t, 128)
	const clients = 200
	for _, s := range []string{"immediate", "stormguard"} {
		res := runLab(t, Config{Target: sb.Addr(), NetNS: sb.NetNS, Clients: clients, Strategy: s,
			Scenario: "kill", Hold: time.Second, Duration: 20 * time.Second})
		checkRecovered(t, res, clients)
		// On a loaded machine a few clients can be between a timed-out
		// PING and their redial when the kill lands, so most, not all,
		// are killed; every killed client's next PING must fail, and the
		// admin connection must survive (else Run returns an error).
		if res.KilledClients == nil || *res.KilledClients < clients*9/10 {
			t.Errorf("%s: CLIENT KILL killed %v, want ≥ %d", s, deref(res.KilledClients), clients*9/10)
		} else if res.FailedCommands < *res.KilledClients {
			t.Errorf("%s: %d failed commands for %d killed clients; every killed client's next PING fails", s, res.FailedCommands, *res.KilledClients)
		}
	}
}

// TestIntegrationEveryStrategy runs each strategy once through a small
// kill, so every reconnect path (and both client libraries) is exercised.
func TestIntegrationEveryStrategy(t *testing.T) {
	sb := newServer(t, 4096)
	const clients = 20
	for _, s := range AvailableStrategies() {
		c := Config{Target: sb.Addr(), NetNS: sb.NetNS, Clients: clients, Strategy: s, Scenario: "kill",
			Hold: 300 * time.Millisecond, Settle: 200 * time.Millisecond, Duration: 20 * time.Second,
			WarmupTimeout: 20 * time.Second}
		if s == "go-redis" || s == "valkey-go" || s == GLIDEStrategy {
			c.Instances = 2 // two processes, ten goroutines sharing each client
		}
		res := runLab(t, c)
		checkRecovered(t, res, clients)
	}
}

// TestIntegrationBlip drops packets to the port for a second: no PING
// sent after the rule went in can finish before it is removed, so
// recovery takes at least the blip, and the rule must be gone afterwards.
func TestIntegrationBlip(t *testing.T) {
	sb := newServer(t, 4096)
	const clients = 50
	blip := time.Second
	res := runLab(t, Config{Target: sb.Addr(), NetNS: sb.NetNS, Clients: clients, Strategy: "glide",
		Scenario: "blip", Blip: blip, Hold: 500 * time.Millisecond, CommandTimeout: 500 * time.Millisecond, Duration: 20 * time.Second})
	if res.RecoveredClients != clients {
		t.Errorf("%d of %d clients recovered", res.RecoveredClients, clients)
	}
	if res.TimeToRecoverMS == nil || *res.TimeToRecoverMS < blip.Milliseconds() {
		t.Errorf("time_to_recover_ms = %v, want ≥ the %s blip", deref(res.TimeToRecoverMS), blip)
	}
	if res.FailedCommands == 0 {
		t.Error("no PING failed during a blip longer than the command timeout")
	}
	ns, err := os.Open(sb.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == labTable {
			t.Errorf("nftables table %s left behind after the blip", labTable)
		}
	}
}

// TestIntegrationChurn measures the generator's own connection rate.
func TestIntegrationChurn(t *testing.T) {
	sb := newServer(t, 4096)
	res := runLab(t, Config{Target: sb.Addr(), NetNS: sb.NetNS, Clients: 10, Strategy: "immediate",
		Scenario: "churn", Duration: time.Second})
	if res.ConnectAttempts < 10 || res.ConnectsPerSec <= 0 {
		t.Errorf("churn made %d connections (%.0f/s)", res.ConnectAttempts, res.ConnectsPerSec)
	}
	if res.TimeToRecoverMS != nil {
		t.Errorf("churn has no disruption, yet time_to_recover_ms = %d", *res.TimeToRecoverMS)
	}
}

// TestIntegrationSocketsInNamespace: the server listens only inside its
// namespace, so a dial made outside it would be refused.
func TestIntegrationSocketsInNamespace(t *testing.T) {
	sb := newServer(t, 4096)
	dial, release, err := NewDialer(sb.NetNS, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for i := 0; i < 2*prefetch+10; i++ { // past the prefetched batch twice
		c, err := dial(context.Background(), "tcp", sb.Addr())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if c.RemoteAddr() == nil || c.RemoteAddr().String() != sb.Addr() {
			t.Fatalf("remote address %v", c.RemoteAddr())
		}
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := dial(ctx, "tcp", "127.0.0.1:1"); err == nil {
		t.Error("dial to a closed port in the namespace succeeded")
	}
}

// TestIntegrationSourceAddrs: inside the server's namespace, a client of
// instance k connects from 127.0.0.(k+1), and the server sees it so.
func TestIntegrationSourceAddrs(t *testing.T) {
	sb := newServer(t, 4096)
	d, err := newSourceDialer(sb.NetNS, prefetch)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src := sourceAddr(9)
	c, err := d.from(src)(ctx, "tcp", sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != src {
		t.Errorf("local address %v, want %v", got, src)
	}
	rc := &rawConn{c: c, r: bufio.NewReader(c)}
	if err := rc.ping(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	out, err := sb.Command(ctx, "valkey-cli", "-p", strconv.Itoa(sb.Port), "CLIENT", "LIST").CombinedOutput()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "addr="+src.String()+":") {
		t.Errorf("the server does not list a client from %v:\n%s", src, out)
	}

	for _, tt := range []struct{ asked, want int }{{0, 6}, {1, 1}, {3, 3}} {
		res := runLab(t, Config{Target: sb.Addr(), NetNS: sb.NetNS, Clients: 6, SourceAddrs: tt.asked,
			Strategy: "immediate", Scenario: "churn", Duration: 500 * time.Millisecond})
		if res.SourceAddrs != tt.want {
			t.Errorf("--source-addrs %d: the run used %d addresses, want %d", tt.asked, res.SourceAddrs, tt.want)
		}
		if res.ConnectAttempts < 6 || res.ConnectFailures != 0 {
			t.Errorf("--source-addrs %d: %d connects, %d failed", tt.asked, res.ConnectAttempts, res.ConnectFailures)
		}
	}
}

// TestIntegrationFleetOverMaxclients: a fleet larger than the target's
// maxclients is refused before the warm-up, which would otherwise wait
// --warmup-timeout for clients Valkey refuses; churn clients, which hold
// no connection between PINGs, are not.
func TestIntegrationFleetOverMaxclients(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--maxclients", "20"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := Run(ctx, Config{Target: sb.Addr(), NetNS: sb.NetNS, Clients: 30, Strategy: "immediate", Scenario: "kill"})
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "Clients" || !strings.Contains(err.Error(), "maxclients is 20") {
		t.Fatalf("err = %v; want a Clients configuration error naming maxclients 20", err)
	}
	res := runLab(t, Config{Target: sb.Addr(), NetNS: sb.NetNS, Clients: 30, Strategy: "immediate",
		Scenario: "churn", Duration: 500 * time.Millisecond})
	if res.ConnectAttempts < 30 {
		t.Errorf("churn made %d connections", res.ConnectAttempts)
	}
}
