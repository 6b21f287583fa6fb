package source

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// sbTarget is the sandbox's Valkey as a Target reached through its netns.
// collectHangBound tells a collect that respects its deadline (a few
// hundred milliseconds) from one that hangs on a frozen Valkey (forever).
// It is generous so that a loaded CI machine never fails a test for being
// slow: the tests assert outcomes (a timeout error, a kept connection).
const collectHangBound = 10 * time.Second

func sbTarget(sb *sandbox.Sandbox) Target {
	return Target{Addr: addr.Addr{Host: "127.0.0.1", Port: sb.Port}, NetNS: sb.NetNS}
}

func openTest(t *testing.T, tg Target, cfg valkeyConfig) *valkeySource {
	t.Helper()
	s := openValkeyWith(context.Background(), Options{Target: tg, Version: "test-1.2"}, cfg)
	t.Cleanup(func() { s.Close() })
	return s
}

// collect runs one Collect with the given deadline.
func collect(s *valkeySource, d time.Duration) (*sample.Valkey, error, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out sample.Sample
	t0 := time.Now()
	err := s.Collect(ctx, &out)
	return out.Valkey, err, time.Since(t0)
}

// collectErr polls until a collect's error satisfies done (or within
// passes) and returns that error. The source connects in the background, so
// on a loaded machine one short collect can end before the attempt does,
// with "no answer within … (still trying)" instead of the attempt's verdict;
// the verdict is what the tests below are about.
func collectErr(s *valkeySource, within time.Duration, done func(error) bool) error {
	deadline := time.Now().Add(within)
	for {
		_, err, _ := collect(s, time.Second)
		if done(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mustCollect polls until a collect returns Valkey fields.
func mustCollect(t *testing.T, s *valkeySource, within time.Duration) *sample.Valkey {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		v, err, _ := collect(s, time.Second)
		if err == nil && v != nil {
			return v
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no Valkey fields within %s; last error: %v", within, last)
	return nil
}

// clientEntry is one line of CLIENT LIST.
type clientEntry map[string]string

// clientList runs CLIENT LIST with valkey-cli inside the namespace (its own
// connection, not the source's) and returns the entries named name.
func clientList(t *testing.T, sb *sandbox.Sandbox, name string, cliArgs ...string) []clientEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append([]string{"-p", strconv.Itoa(sb.Port)}, cliArgs...)
	out, err := sb.Command(ctx, "valkey-cli", append(args, "CLIENT", "LIST")...).CombinedOutput()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v: %s", err, out)
	}
	var res []clientEntry
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		e := clientEntry{}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			e[k] = v
		}
		if e["name"] == name {
			res = append(res, e)
		}
	}
	return res
}

func cli(t *testing.T, sb *sandbox.Sandbox, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := sb.Command(ctx, "valkey-cli", append([]string{"-p", strconv.Itoa(sb.Port)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("valkey-cli %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestIntegrationValkeyOneConnection(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--tcp-backlog", "128"}})
	s := openTest(t, sbTarget(sb), defaultValkeyConfig())

	first := mustCollect(t, s, 5*time.Second)
	cliCalls := 0
	var id string
	for i := 0; i < 40; i++ {
		v, err, took := collect(s, 500*time.Millisecond)
		if err != nil || v == nil {
			t.Fatalf("collect %d: %v", i, err)
		}
		if took > collectHangBound {
			t.Fatalf("collect %d took %s", i, took)
		}
		if v.ConnectedClients == nil || v.MaxClients == nil || v.RejectedConnections == nil || v.PingMS == nil ||
			v.TotalConnectionsReceived == nil || v.UsedMemory == nil || v.UsedCPUSys == nil || v.Role != "master" || v.Version == "" {
			t.Fatalf("collect %d: missing fields: %+v", i, v)
		}
		if v.TCPBacklog == nil || *v.TCPBacklog != 128 {
			t.Fatalf("collect %d: tcp_backlog = %v, want 128 (--tcp-backlog)", i, v.TCPBacklog)
		}
		if i%10 == 0 {
			cl := clientList(t, sb, clientName)
			cliCalls++
			if len(cl) != 1 {
				t.Fatalf("collect %d: %d connections named %s, want exactly 1: %v", i, len(cl), clientName, cl)
			}
			if cl[0]["lib-name"] != "stormguard" || cl[0]["lib-ver"] != "test-1.2" {
				t.Fatalf("CLIENT SETINFO: lib-name=%q lib-ver=%q", cl[0]["lib-name"], cl[0]["lib-ver"])
			}
			if id != "" && cl[0]["id"] != id {
				t.Fatalf("connection id changed %s -> %s", id, cl[0]["id"])
			}
			id = cl[0]["id"]
		}
	}
	last := mustCollect(t, s, 5*time.Second)
	// Every connection Valkey accepted meanwhile was valkey-cli's.
	if got := *last.TotalConnectionsReceived - *first.TotalConnectionsReceived; got != uint64(cliCalls) {
		t.Fatalf("total_connections_received grew by %d over the collects, want %d (valkey-cli only)", got, cliCalls)
	}
	s.mu.Lock()
	dials, live := s.dials, s.live
	s.mu.Unlock()
	if dials != 1 || live != 1 || last.Reconnects != 0 {
		t.Fatalf("dials %d, live sockets %d, reconnects %d; want 1, 1, 0", dials, live, last.Reconnects)
	}
}

func TestIntegrationValkeyAtMaxclients(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--maxclients", "20"}})
	s := openTest(t, sbTarget(sb), defaultValkeyConfig())
	before := mustCollect(t, s, 5*time.Second)

	// 40 idle clients from inside the namespace: 19 fit, the rest are
	// refused with "max number of clients reached".
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 0; i < 40; i++ {
		c, err := sb.Dial(context.Background())
		if err != nil {
			t.Fatalf("idle client %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	var rejected uint64
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; n < 10 || rejected <= *before.RejectedConnections; n++ {
		if time.Now().After(deadline) {
			t.Fatalf("rejected_connections stayed at %d", rejected)
		}
		v, err, _ := collect(s, 500*time.Millisecond)
		if err != nil || v == nil {
			t.Fatalf("sample %d at maxclients: %v (the reserved connection must keep reporting)", n, err)
		}
		if v.ConnectedClients == nil || v.MaxClients == nil || *v.MaxClients != 20 || v.RejectedConnections == nil {
			t.Fatalf("sample %d: fields missing at maxclients: %+v", n, v)
		}
		if *v.ConnectedClients > 20 {
			t.Fatalf("connected_clients %d > maxclients", *v.ConnectedClients)
		}
		rejected = *v.RejectedConnections
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("rejected_connections %d -> %d", *before.RejectedConnections, rejected)

	// A second source, opened now, is itself refused: the message says so.
	s2 := openTest(t, sbTarget(sb), defaultValkeyConfig())
	_, err, _ := collect(s2, 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "max number of clients") {
		t.Fatalf("second source at maxclients: %v; want the maxclients refusal", err)
	}
}

func TestIntegrationValkeyFrozen(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	s := openTest(t, sbTarget(sb), defaultValkeyConfig())
	mustCollect(t, s, 5*time.Second)
	before := clientList(t, sb, clientName)
	if len(before) != 1 {
		t.Fatalf("%d stormguard connections, want 1", len(before))
	}

	sandboxtest.Freeze(t, sb)
	const deadline = 300 * time.Millisecond
	for i := 0; i < 6; i++ {
		v, err, took := collect(s, deadline)
		if err == nil || v != nil {
			t.Fatalf("collect %d on a frozen Valkey: %+v, %v; want a timeout", i, v, err)
		}
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection kept") {
			t.Fatalf("collect %d: %q; want a timeout that keeps the connection", i, err)
		}
		if took > collectHangBound {
			t.Fatalf("collect %d took %s with a %s deadline", i, took, deadline)
		}
	}
	if err := sb.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	v := mustCollect(t, s, 10*time.Second)
	if v.Reconnects != 0 {
		t.Fatalf("reconnects = %d after a freeze, want 0", v.Reconnects)
	}
	after := clientList(t, sb, clientName)
	if len(after) != 1 || after[0]["id"] != before[0]["id"] {
		t.Fatalf("connection changed across the freeze: before %v after %v", before, after)
	}
	// No pile-up: the frozen collects queued one PING, not six. Since
	// the first CLIENT LIST: that PING and its INFO, then one more
	// PING+INFO (tcp-backlog was read before the freeze).
	b, _ := strconv.Atoi(before[0]["tot-cmds"])
	a, _ := strconv.Atoi(after[0]["tot-cmds"])
	if a-b > 6 {
		t.Fatalf("%d commands reached Valkey across the freeze; collects piled up", a-b)
	}
	s.mu.Lock()
	dials := s.dials
	s.mu.Unlock()
	if dials != 1 {
		t.Fatalf("%d dials, want 1", dials)
	}
}

func TestIntegrationValkeyRestart(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	set := &Set{}
	s := openTest(t, sbTarget(sb), defaultValkeyConfig())
	set.Sources = append(set.Sources, s)
	sm := &sample.Sampler{Target: sbTarget(sb).Name(), Port: sb.Port, Sources: set.Sources, Interval: 100 * time.Millisecond}
	mustCollect(t, s, 5*time.Second)

	if err := sb.StopValkey(); err != nil {
		t.Fatal(err)
	}
	const samples = 20
	for i := 0; i < samples; i++ {
		smp := sm.Once(context.Background())
		if smp == nil {
			t.Fatalf("sample %d missing", i)
		}
		if smp.Valkey != nil {
			t.Fatalf("sample %d has Valkey fields with Valkey down: %+v", i, smp.Valkey)
		}
		if reason := smp.Errors["valkey"]; reason == "" {
			t.Fatalf("sample %d: errors.valkey empty", i)
		} else if i == samples-1 {
			t.Logf("errors.valkey: %s", reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.mu.Lock()
	downDials := s.dials - 1
	s.mu.Unlock()
	if downDials >= samples/2 {
		t.Fatalf("%d dials over %d samples with Valkey down: not backing off", downDials, samples)
	}

	if err := sb.StartValkey(context.Background()); err != nil {
		t.Fatal(err)
	}
	v := mustCollect(t, s, 15*time.Second)
	if v.Reconnects < 1 {
		t.Fatalf("reconnects = %d after a restart, want >= 1", v.Reconnects)
	}
	if cl := clientList(t, sb, clientName); len(cl) != 1 {
		t.Fatalf("%d stormguard connections after the restart, want 1", len(cl))
	}
	smp := sm.Once(context.Background())
	if smp.Valkey == nil || smp.Errors["valkey"] != "" {
		t.Fatalf("sampler after restart: valkey %+v, error %q", smp.Valkey, smp.Errors["valkey"])
	}
	t.Logf("%d dials while down for %d samples; reconnects %d", downDials, samples, v.Reconnects)
}

func TestIntegrationValkeyACL(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	// A least-privilege monitoring user, and one that may not CONFIG GET.
	cli(t, sb, "ACL", "SETUSER", "mon", "on", ">s3cret-mon", "-@all", "+ping", "+info", "+hello", "+config|get", "+client|setname", "+client|setinfo")
	cli(t, sb, "ACL", "SETUSER", "mon2", "on", ">s3cret-mon2", "-@all", "+ping", "+info", "+hello", "+client|setname", "+client|setinfo")

	withAuth := func(user, pass string) Target {
		tg := sbTarget(sb)
		tg.Addr.User, tg.Addr.Password = user, pass
		return tg
	}
	t.Run("user and password", func(t *testing.T) {
		s := openTest(t, withAuth("mon", "s3cret-mon"), defaultValkeyConfig())
		v := mustCollect(t, s, 5*time.Second)
		if v.TCPBacklog == nil {
			t.Fatal("tcp_backlog missing although mon may CONFIG GET")
		}
		cl := clientList(t, sb, clientName)
		if len(cl) != 1 || cl[0]["user"] != "mon" {
			t.Fatalf("CLIENT LIST: %v; want one connection as user mon", cl)
		}
	})
	t.Run("no CONFIG permission", func(t *testing.T) {
		s := openTest(t, withAuth("mon2", "s3cret-mon2"), defaultValkeyConfig())
		for i := 0; i < 3; i++ {
			v := mustCollect(t, s, 5*time.Second)
			if v.TCPBacklog != nil {
				t.Fatalf("tcp_backlog = %d without CONFIG permission", *v.TCPBacklog)
			}
			if v.ConnectedClients == nil {
				t.Fatal("INFO fields missing")
			}
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		s := openTest(t, withAuth("mon", "wrong-pw-123"), defaultValkeyConfig())
		isAuth := func(err error) bool { return errors.Is(err, ErrValkeyAuth) }
		err := collectErr(s, 20*time.Second, isAuth)
		if err == nil {
			t.Fatal("wrong password: collect succeeded")
		}
		if !errors.Is(err, ErrValkeyAuth) || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "authentication failed") {
			t.Fatalf("wrong password: %q; want an authentication failure", err)
		}
		if strings.Contains(err.Error(), "wrong-pw-123") {
			t.Fatalf("the password leaked into %q", err)
		}
		t.Logf("wrong password: %v", err)
	})
	t.Run("requirepass", func(t *testing.T) {
		cli(t, sb, "CONFIG", "SET", "requirepass", "def-pass-9")
		t.Cleanup(func() { cli(t, sb, "-a", "def-pass-9", "--no-auth-warning", "CONFIG", "SET", "requirepass", "") })
		s := openTest(t, withAuth("", ""), defaultValkeyConfig())
		err := collectErr(s, 20*time.Second, func(err error) bool { return errors.Is(err, ErrValkeyAuth) })
		if !errors.Is(err, ErrValkeyAuth) || !strings.Contains(err.Error(), "requires a password") {
			t.Fatalf("no password: %v; want 'requires a password'", err)
		}
		t.Logf("no password: %v", err)
		s2 := openTest(t, withAuth("", "def-pass-9"), defaultValkeyConfig())
		mustCollect(t, s2, 5*time.Second)
	})
}

// TestIntegrationValkeyLongSilenceDrops shortens the silence limit to check
// the other half of the policy: a connection that stays totally silent past
// KeepAlive + SilenceLimit is dropped and later redialled.
func TestIntegrationValkeyLongSilenceDrops(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	cfg := defaultValkeyConfig()
	cfg.KeepAlive, cfg.SilenceLimit, cfg.DialTimeout = 500*time.Millisecond, time.Second, time.Second
	s := openTest(t, sbTarget(sb), cfg)
	mustCollect(t, s, 5*time.Second)

	sandboxtest.Freeze(t, sb)
	dropped := false
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end) && !dropped; {
		_, err, took := collect(s, 300*time.Millisecond)
		if err == nil {
			t.Fatal("collect succeeded on a frozen Valkey")
		}
		if took > collectHangBound {
			t.Fatalf("collect took %s with a 300ms deadline", took)
		}
		dropped = errors.Is(err, ErrUnavailable)
		time.Sleep(100 * time.Millisecond)
	}
	if !dropped {
		t.Fatal("connection never dropped after a long total silence")
	}
	if err := sb.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	v := mustCollect(t, s, 15*time.Second)
	if v.Reconnects < 1 {
		t.Fatalf("reconnects = %d, want >= 1", v.Reconnects)
	}
	if cl := clientList(t, sb, clientName); len(cl) != 1 {
		t.Fatalf("%d stormguard connections, want 1", len(cl))
	}
}
