//go:build linux

package defuse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

func sandboxManager(t *testing.T, sb *sandbox.Sandbox) *Manager {
	t.Helper()
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return &Manager{StatePath: filepath.Join(t.TempDir(), "defuse.json"), NetNS: sb.NetNS, Valkey: a}
}

func nftRuleset(t *testing.T, sb *sandbox.Sandbox) string {
	t.Helper()
	out, err := sb.Command(context.Background(), "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v: %s", err, out)
	}
	return string(out)
}

func cli(t *testing.T, sb *sandbox.Sandbox, args ...string) string {
	t.Helper()
	out, err := sb.Command(context.Background(), "valkey-cli", append([]string{"-p", strconv.Itoa(sb.Port)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("valkey-cli %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func infoField(t *testing.T, sb *sandbox.Sandbox, field string) int64 {
	t.Helper()
	n, ok := atoi(valkeyconn.ParseInfo(cli(t, sb, "INFO")), field)
	if !ok {
		t.Fatalf("INFO has no %s", field)
	}
	return n
}

// burst dials n connections at once from inside the namespace, each with
// the given timeout, and returns how many completed the handshake. A SYN
// dropped by the limiter is retransmitted only after 1s, so a timeout
// under 1s counts it as refused.
func burst(t *testing.T, sb *sandbox.Sandbox, n int, timeout time.Duration) int {
	t.Helper()
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			c, err := sb.Dial(ctx)
			if err == nil {
				ok.Add(1)
				c.Close()
			}
		}()
	}
	wg.Wait()
	return int(ok.Load())
}

// pingers keeps n established connections sending PING until stopped, and
// counts errors: a mitigation must never disturb them.
type pingers struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	pings  atomic.Int64
	errs   atomic.Int64
	errMsg atomic.Value
}

// waitIdle waits until at least n clients have been idle for minIdle by
// Valkey's own count (CLIENT LIST idle=, whole seconds).
func waitIdle(t *testing.T, sb *sandbox.Sandbox, n int, minIdle time.Duration) {
	t.Helper()
	deadline := time.Now().Add(minIdle + 20*time.Second)
	for {
		out, err := sb.Command(context.Background(), "valkey-cli", "-p", strconv.Itoa(sb.Port), "CLIENT", "LIST").Output()
		if err != nil {
			t.Fatalf("CLIENT LIST: %v", err)
		}
		idle := 0
		for _, line := range strings.Split(string(out), "\n") {
			for _, f := range strings.Fields(line) {
				if v, ok := strings.CutPrefix(f, "idle="); ok {
					if sec, err := strconv.Atoi(v); err == nil && time.Duration(sec)*time.Second >= minIdle {
						idle++
					}
				}
			}
		}
		if idle >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d clients idle for %s", idle, n, minIdle)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func startPingers(t *testing.T, sb *sandbox.Sandbox, n int) *pingers {
	t.Helper()
	p := &pingers{stop: make(chan struct{})}
	for i := range n {
		c, err := dialPatiently(sb)
		if err != nil {
			t.Fatalf("dial pinger %d: %v", i, err)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				select {
				case <-p.stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write([]byte("PING\r\n")); err != nil {
					p.fail(err)
					return
				}
				line, err := r.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "+PONG") {
					p.fail(fmt.Errorf("PING: %q, %v", line, err))
					return
				}
				p.pings.Add(1)
			}
		}()
	}
	return p
}

// dialPatiently dials until it connects or 20 s pass. A pinger may dial
// while a SYN rate limit is applied (the safety matrix restarts Valkey under
// one, and the restart's readiness probes spend the limit's burst): its SYN
// is then dropped and retransmitted 1 s, 2 s, 4 s later, longer than one
// Dial's 2 s timeout on a loaded machine. Waiting for admission is what the
// mitigation asks of new clients; only established clients must see no error.
func dialPatiently(sb *sandbox.Sandbox) (net.Conn, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := sb.Dial(context.Background())
		if err == nil || time.Now().After(deadline) {
			return c, err
		}
	}
}

func (p *pingers) fail(err error) { p.errs.Add(1); p.errMsg.Store(err.Error()) }

func (p *pingers) finish(t *testing.T) {
	t.Helper()
	close(p.stop)
	p.wg.Wait()
	if n := p.errs.Load(); n != 0 {
		t.Errorf("established clients saw %d errors (last: %v)", n, p.errMsg.Load())
	}
	if p.pings.Load() == 0 {
		t.Error("established clients sent no PINGs")
	}
	t.Logf("established clients: %d PINGs, %d errors", p.pings.Load(), p.errs.Load())
}

func TestIntegrationRatelimitSYN(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--maxclients", "2000"}})
	ctx := context.Background()
	m := sandboxManager(t, sb)
	pg := startPingers(t, sb, 40)

	const n, dialTimeout = 200, 700 * time.Millisecond
	before := infoField(t, sb, "total_connections_received")
	baseline := burst(t, sb, n, dialTimeout)
	mid := infoField(t, sb, "total_connections_received")
	if baseline < n*3/4 {
		t.Fatalf("without a limit only %d of %d connects succeeded; the box is too loaded to compare", baseline, n)
	}

	mt, err := m.Apply(ctx, RatelimitSYN, Params{Port: sb.Port, TTL: 4 * time.Second, Rate: Rate{5, "second"}, Burst: 6})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	rs := nftRuleset(t, sb)
	for _, want := range []string{
		"table inet stormguard", "hook prerouting priority raw", "set arm-" + mt.ID, "set src4-" + mt.ID, "set src6-" + mt.ID,
		"tcp flags syn / syn,ack update @src4-" + mt.ID + " { ip saddr limit rate over 5/second burst 6 packets }",
		`drop comment "stormguard:` + mt.ID + ` ratelimit-syn"`,
	} {
		if !strings.Contains(rs, want) {
			t.Errorf("nft list ruleset lacks %q:\n%s", want, rs)
		}
	}
	mid2 := infoField(t, sb, "total_connections_received")
	limited := burst(t, sb, n, dialTimeout)
	after := infoField(t, sb, "total_connections_received")
	t.Logf("connect burst of %d from one source: %d succeeded without limit (Valkey +%d), %d with 5/s burst 6 (Valkey +%d)",
		n, baseline, mid-before, limited, after-mid2)
	if limited > 40 || limited*2 > baseline {
		t.Errorf("with the limit %d of %d connects succeeded (baseline %d); want at most 40", limited, n, baseline)
	}
	if after-mid2 >= mid-before {
		t.Errorf("Valkey accepted %d connections with the limit vs %d without", after-mid2, mid-before)
	}

	// The limit lapses by itself: no stormguard call from here on.
	time.Sleep(time.Until(mt.Expires) + 500*time.Millisecond)
	// Disarmed: the set has no element, or the restore process already
	// removed the lapsed objects.
	if rs := nftRuleset(t, sb); strings.Contains(rs, "elements") {
		t.Errorf("arm set after TTL still has its element:\n%s", rs)
	}
	lapsed := burst(t, sb, n, dialTimeout)
	t.Logf("after the TTL, without running stormguard: %d of %d succeeded", lapsed, n)
	if lapsed < n*3/4 {
		t.Errorf("after the TTL only %d of %d connects succeeded: the kernel did not lift the limit", lapsed, n)
	}
	pg.finish(t)

	ls, err := m.List(ctx)
	if err != nil || len(ls) != 0 {
		t.Errorf("list after expiry = %+v, %v; want empty", ls, err)
	}
	if rs := nftRuleset(t, sb); strings.Contains(rs, "stormguard") {
		t.Errorf("table left after expiry cleanup:\n%s", rs)
	}
}

// TestIntegrationExpiryWithoutStormguard is the crash case: apply, then no
// revert and no stormguard process; the kernel must end the rule and the
// next run (a fresh Manager, as a new process) must list nothing.
func TestIntegrationExpiryWithoutStormguard(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	ctx := context.Background()
	m := sandboxManager(t, sb)
	mt, err := m.Apply(ctx, RatelimitGlobal, Params{Port: sb.Port, TTL: 2 * time.Second, Rate: Rate{1, "second"}, Burst: 5})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	ls, err := m.List(ctx)
	if err != nil || len(ls) != 1 || ls[0].ID != mt.ID || ls[0].Expires.IsZero() {
		t.Fatalf("list right after apply = %+v, %v", ls, err)
	}
	if got := burst(t, sb, 50, 700*time.Millisecond); got > 20 {
		t.Errorf("global limit 1/s burst 5 let %d of 50 connects through", got)
	}
	statePath := m.StatePath
	m = nil // "SIGKILL": nothing of this run survives but the kernel rules and the state file.
	_ = m

	time.Sleep(time.Until(mt.Expires) + 500*time.Millisecond)
	if got := burst(t, sb, 50, 700*time.Millisecond); got < 40 {
		t.Errorf("after the TTL only %d of 50 connects succeeded", got)
	}
	// Disarmed: no element left (the restore process may also have
	// removed the empty objects already).
	if rs := nftRuleset(t, sb); strings.Contains(rs, "elements") {
		t.Errorf("expected the rules disarmed (no element) after the TTL:\n%s", rs)
	}
	// The next run: a fresh Manager on the same state file.
	m2 := sandboxManager(t, sb)
	m2.StatePath = statePath
	ls, err = m2.List(ctx)
	if err != nil || len(ls) != 0 {
		t.Fatalf("next list = %+v, %v; want empty", ls, err)
	}
	if rs := nftRuleset(t, sb); strings.Contains(rs, "stormguard") {
		t.Errorf("lapsed objects not cleaned up:\n%s", rs)
	}
	if st, err := loadState(statePath); err != nil || len(st.Mitigations) != 0 {
		t.Errorf("state file after expiry: %+v, %v", st, err)
	}
}

func TestIntegrationAcceptCap(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	ctx := context.Background()
	m := sandboxManager(t, sb)
	orig := cli(t, sb, "CONFIG", "GET", configAcceptCap)
	mt, err := m.Apply(ctx, AcceptCap, Params{TTL: time.Minute, Value: 100})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if got := cli(t, sb, "CONFIG", "GET", configAcceptCap); got != configAcceptCap+"\n100" {
		t.Fatalf("after apply: %q", got)
	}
	if _, err := m.Revert(ctx, mt.ID); err != nil {
		t.Fatalf("revert: %v", err)
	}
	if got := cli(t, sb, "CONFIG", "GET", configAcceptCap); got != orig {
		t.Fatalf("after revert: %q, want %q", got, orig)
	}
	// Expiry restores too (the scheduled restore process, at the TTL).
	mt, err = m.Apply(ctx, AcceptCap, Params{TTL: time.Second, Value: 3})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	time.Sleep(time.Until(mt.Expires) + 100*time.Millisecond)
	if ls, err := m.List(ctx); err != nil || len(ls) != 0 {
		t.Fatalf("list after TTL = %+v, %v", ls, err)
	}
	if got := cli(t, sb, "CONFIG", "GET", configAcceptCap); got != orig {
		t.Fatalf("after expiry: %q, want %q", got, orig)
	}
}

func TestIntegrationBacklog(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{sysctlSomaxconn: "128", sysctlSynBacklog: "256"}})
	ctx := context.Background()
	m := sandboxManager(t, sb)
	if _, err := m.Apply(ctx, Backlog, Params{TTL: time.Minute, Somaxconn: 64}); !errors.Is(err, ErrRefused) {
		t.Fatalf("lowering somaxconn: %v, want ErrRefused", err)
	}
	mt, err := m.Apply(ctx, Backlog, Params{TTL: time.Minute, Somaxconn: 4096, SynBacklog: 8192})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	for k, want := range map[string]string{sysctlSomaxconn: "4096", sysctlSynBacklog: "8192"} {
		if v, _ := sb.Sysctl(k); v != want {
			t.Errorf("%s = %s, want %s", k, v, want)
		}
	}
	if h, _ := os.ReadFile("/proc/sys/net/core/somaxconn"); strings.TrimSpace(string(h)) == "4096" {
		t.Log("host somaxconn happens to be 4096; isolation not proven by this value")
	}
	if _, err := m.Revert(ctx, mt.ID); err != nil {
		t.Fatalf("revert: %v", err)
	}
	for k, want := range map[string]string{sysctlSomaxconn: "128", sysctlSynBacklog: "256"} {
		if v, _ := sb.Sysctl(k); v != want {
			t.Errorf("after revert %s = %s, want %s", k, v, want)
		}
	}
}

func TestIntegrationNotrack(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	ctx := context.Background()
	m := sandboxManager(t, sb)
	if _, err := sb.Sysctl("net.netfilter.nf_conntrack_count"); err != nil {
		_, err := m.Apply(ctx, Notrack, Params{Port: sb.Port, TTL: time.Minute})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "conntrack is not active") {
			t.Fatalf("without conntrack: %v, want a refusal", err)
		}
		return
	}
	mt, err := m.Apply(ctx, Notrack, Params{Port: sb.Port, TTL: time.Minute})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	rs := nftRuleset(t, sb)
	for _, want := range []string{"hook output priority raw", "tcp dport @arm-" + mt.ID + " counter", "tcp sport @arm-" + mt.ID + " counter", "notrack comment"} {
		if !strings.Contains(rs, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, rs)
		}
	}
	if err := sb.Ping(ctx); err != nil {
		t.Errorf("PING with notrack: %v", err)
	}
	if _, err := m.Revert(ctx, mt.ID); err != nil {
		t.Fatal(err)
	}
	// A NAT chain in the namespace makes notrack unsafe.
	for _, c := range [][]string{
		{"nft", "add", "table", "ip", "nat"},
		{"nft", "add", "chain", "ip", "nat", "post", "{ type nat hook postrouting priority 100; }"},
	} {
		if out, err := sb.Command(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	_, err = m.Apply(ctx, Notrack, Params{Port: sb.Port, TTL: time.Minute})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "table ip nat chain post is a NAT chain") {
		t.Fatalf("with a NAT chain: %v, want a refusal naming it", err)
	}
	if strings.Contains(nftRuleset(t, sb), "stormguard") {
		t.Error("refused notrack left objects behind")
	}
}

// With nf_conntrack_tcp_loose = 0, connections opened while notrack is
// armed would be INVALID once tracking resumes: refused, naming the sysctl.
func TestIntegrationNotrackTCPLoose(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	if _, err := sb.Sysctl("net.netfilter.nf_conntrack_count"); err != nil {
		t.Fatalf("conntrack is not active in the sandbox: %v", err)
	}
	if err := sb.SetSysctl(sysctlTCPLoose, "0"); err != nil {
		t.Fatalf("set %s: %v", sysctlTCPLoose, err)
	}
	_, err := sandboxManager(t, sb).Apply(context.Background(), Notrack, Params{Port: sb.Port, TTL: time.Minute})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), sysctlTCPLoose+" = 0") {
		t.Fatalf("notrack with tcp_loose 0: %v, want a refusal naming it", err)
	}
}

// TestIntegrationNotrackIptablesNFT: the stateful filter written with
// iptables-nft (the default iptables on current distributions) is seen
// over netlink as xtables matches, not as nft's ct expressions; notrack is
// refused quoting each rule, and nothing is installed.
func TestIntegrationNotrackIptablesNFT(t *testing.T) {
	if _, err := exec.LookPath("iptables-nft"); err != nil {
		sandboxtest.SkipOrFail(t, "iptables-nft not installed (scripts/install-deps.sh installs the iptables package)")
	}
	sb := sandboxtest.New(t, sandbox.Options{})
	for _, args := range [][]string{
		{"-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		{"-A", "INPUT", "-p", "tcp", "--dport", strconv.Itoa(sb.Port), "-m", "state", "--state", "NEW", "-j", "ACCEPT"},
		{"-P", "INPUT", "DROP"},
	} {
		if out, err := sb.Command(context.Background(), "iptables-nft", args...).CombinedOutput(); err != nil {
			t.Fatalf("iptables-nft %v: %v: %s", args, err, out)
		}
	}
	_, err := sandboxManager(t, sb).Apply(context.Background(), Notrack, Params{Port: sb.Port, TTL: time.Minute})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("notrack under an iptables-nft stateful filter: %v, want a refusal", err)
	}
	// Both rules, each named by table, chain and handle.
	if n := strings.Count(err.Error(), `table ip filter chain INPUT rule handle `); n != 2 || !strings.Contains(err.Error(), `"xt match conntrack counter accept" uses iptables -m conntrack`) {
		t.Fatalf("refusal %q; want both INPUT rules quoted", err)
	}
	if strings.Contains(nftRuleset(t, sb), TableName) {
		t.Error("refused notrack left objects behind")
	}
	if err := sb.Ping(context.Background()); err != nil {
		t.Errorf("PING through the filter after the refusal: %v", err)
	}
}

func TestIntegrationKillIdle(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--maxclients", "50"}})
	ctx := context.Background()
	m := sandboxManager(t, sb)
	// Valkey reports idle in whole seconds; 3s keeps the active pingers
	// (a PING every 20ms) far from the threshold even when a loaded
	// machine starves their goroutines for a second.
	p := Params{TTL: time.Second, ConfirmKill: true, MinIdle: 3 * time.Second, NearFraction: 0.9}
	if _, err := m.Apply(ctx, KillIdle, p); !errors.Is(err, ErrRefused) {
		t.Fatalf("far from maxclients: %v, want ErrRefused", err)
	}
	var idle []interface{ Close() error }
	for i := range 44 {
		c, err := sb.Dial(ctx)
		if err != nil {
			t.Fatalf("idle client %d: %v", i, err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	pg := startPingers(t, sb, 2) // active: never idle, never killed
	waitIdle(t, sb, 44, p.MinIdle)
	mt, err := m.Apply(ctx, KillIdle, p)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if mt.Reversible || len(mt.Changes) < 40 {
		t.Fatalf("kill-idle killed %d (reversible %v), want >= 40 irreversible", len(mt.Changes), mt.Reversible)
	}
	deadline := time.Now().Add(10 * time.Second)
	for infoField(t, sb, "connected_clients") > 10 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := infoField(t, sb, "connected_clients"); n > 10 {
		t.Errorf("connected_clients %d after kill-idle", n)
	}
	time.Sleep(300 * time.Millisecond)
	pg.finish(t)
	if ls, _ := m.List(ctx); len(ls) != 0 {
		t.Errorf("kill-idle listed as active: %+v", ls)
	}
}

func TestIntegrationDryRun(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{NoValkey: true})
	ctx := context.Background()
	m := sandboxManager(t, sb)
	for _, a := range []Action{RatelimitSYN, RatelimitGlobal} {
		mt, err := m.Apply(ctx, a, Params{Port: 6379, TTL: time.Minute, Rate: Rate{20, "second"}, DryRun: true})
		if err != nil {
			t.Fatalf("dry run %s: %v", a, err)
		}
		if rs := nftRuleset(t, sb); strings.Contains(rs, "stormguard") {
			t.Fatalf("dry run installed rules:\n%s", rs)
		}
		// What the dry run shows is exactly valid nft input.
		f := filepath.Join(t.TempDir(), "plan.nft")
		if err := os.WriteFile(f, []byte(strings.Join(mt.Changes, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := sb.Command(ctx, "nft", "-c", "-f", f).CombinedOutput(); err != nil {
			t.Errorf("nft -c rejects the dry run of %s: %v\n%s", a, err, out)
		}
	}
	if ls, _ := m.List(ctx); len(ls) != 0 {
		t.Errorf("dry runs listed: %+v", ls)
	}
}

func TestIntegrationPlanSnapshot(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{sysctlSomaxconn: "64"}, ValkeyArgs: []string{"--tcp-backlog", "64"}})
	a, _ := addr.Parse(sb.Addr())
	s := ReadSnapshot(context.Background(), sb.NetNS, a, 300*time.Millisecond)
	if s.AcceptLimit == nil || *s.AcceptLimit != 64 || s.Somaxconn == nil || *s.Somaxconn != 64 {
		t.Fatalf("snapshot limit/somaxconn = %v/%v, errors %v", deref(s.AcceptLimit), deref(s.Somaxconn), s.Errors)
	}
	if s.ConnectedClients == nil || s.MaxClients == nil || *s.MaxClients != 10000 || s.AcceptCap == nil || s.ListenOverflowsPerSec == nil {
		t.Fatalf("snapshot valkey fields missing: %+v errors %v", s, s.Errors)
	}
	if p := Propose(s, PlanTarget{}); p.Verdict != "calm" {
		t.Errorf("idle server verdict %s: %+v", p.Verdict, p.Proposals)
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestIntegrationGlobalRemoteOnly: the admission limit auto mode arms
// (ratelimit-global with RemoteOnly) leaves this host's own connections
// alone — the same loopback burst a plain global limit throttles passes
// in full — so the agent can reconnect to Valkey through a storm.
func TestIntegrationGlobalRemoteOnly(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	ctx := context.Background()
	m := sandboxManager(t, sb)
	mt, err := m.Apply(ctx, RatelimitGlobal, Params{Port: sb.Port, TTL: time.Minute, Rate: Rate{1, "second"}, Burst: 5, RemoteOnly: true})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if rs := nftRuleset(t, sb); !strings.Contains(rs, `iifname != "lo"`) {
		t.Errorf("ruleset lacks the loopback exemption:\n%s", rs)
	}
	if got := burst(t, sb, 50, 700*time.Millisecond); got < 40 {
		t.Errorf("remote-only global limit 1/s let only %d of 50 loopback connects through", got)
	}
	if _, err := m.Revert(ctx, mt.ID); err != nil {
		t.Fatalf("revert: %v", err)
	}
	// The control: without RemoteOnly the same burst is throttled.
	mt, err = m.Apply(ctx, RatelimitGlobal, Params{Port: sb.Port, TTL: time.Minute, Rate: Rate{1, "second"}, Burst: 5})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if got := burst(t, sb, 50, 700*time.Millisecond); got > 20 {
		t.Errorf("global limit 1/s burst 5 let %d of 50 connects through", got)
	}
	if _, err := m.Revert(ctx, mt.ID); err != nil {
		t.Fatalf("revert: %v", err)
	}
}
