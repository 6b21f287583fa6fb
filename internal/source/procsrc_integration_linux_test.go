//go:build linux

package source

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// nstatIn reads one counter with nstat inside the sandbox: -a ignores and
// -s does not write nstat's history file, -z prints zeros.
func nstatIn(t *testing.T, sb *sandbox.Sandbox, name string) uint64 {
	t.Helper()
	out, err := sb.Command(context.Background(), "nstat", "-asz", "--json", name).Output()
	if err != nil {
		t.Fatalf("nstat in %s: %v", sb.Name, err)
	}
	var v struct{ Kernel map[string]uint64 }
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("nstat output %q: %v", out, err)
	}
	n, ok := v.Kernel[name]
	if !ok {
		t.Fatalf("nstat output has no %s: %s", name, out)
	}
	return n
}

func collectTCP(t *testing.T, src *TCPStat) *sample.TCP {
	t.Helper()
	var s sample.Sample
	if err := src.Collect(context.Background(), &s); err != nil {
		t.Fatalf("collect tcp: %v", err)
	}
	return s.TCP
}

// TestIntegrationTCPStatListenOverflows overflows a real accept queue in a
// namespace (somaxconn 4, Valkey frozen so it never accepts) and checks
// that the namespace's ListenOverflows, read through files opened inside
// the namespace and re-read from outside it, rises and agrees with nstat
// run in that namespace, while the host's counters are a different set.
func TestIntegrationTCPStatListenOverflows(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{
		Sysctls:    map[string]string{"net.core.somaxconn": "4"},
		ValkeyArgs: []string{"--tcp-backlog", "4"},
	})
	src := NewTCPStat(TCPStatConfig{NetNS: sb.NetNS})
	t.Cleanup(func() { src.Close() })
	host := NewTCPStat(TCPStatConfig{})

	before := collectTCP(t, src)
	if *before.ListenOverflows != 0 {
		t.Fatalf("fresh namespace has ListenOverflows %d, want 0: not reading the namespace?", *before.ListenOverflows)
	}

	sandboxtest.Freeze(t, sb)

	// 24 concurrent dials against an accept queue of 4 that nobody
	// drains: the first few complete in the kernel, the rest have their
	// SYNs dropped (ListenOverflows++) and time out.
	const dials = 24
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	for i := 0; i < dials; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			c, err := sb.Dial(ctx)
			if err == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	t.Logf("%d of %d dials completed against a frozen Valkey", len(conns), dials)

	var after *sample.TCP
	deadline := time.Now().Add(15 * time.Second)
	for {
		after = collectTCP(t, src)
		if *after.ListenOverflows > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if *after.ListenOverflows == 0 {
		t.Fatal("ListenOverflows stayed 0 after overflowing the accept queue")
	}
	if *after.ListenDrops < *after.ListenOverflows {
		t.Errorf("ListenDrops %d < ListenOverflows %d", *after.ListenDrops, *after.ListenOverflows)
	}

	// Agreement with nstat in the namespace. SYN retransmits of the
	// timed-out dials may still arrive, so bracket nstat between reads.
	lo := collectTCP(t, src)
	n := nstatIn(t, sb, "TcpExtListenOverflows")
	hi := collectTCP(t, src)
	if n < *lo.ListenOverflows || n > *hi.ListenOverflows {
		t.Fatalf("nstat in namespace says TcpExtListenOverflows %d; source read %d before and %d after", n, *lo.ListenOverflows, *hi.ListenOverflows)
	}
	po := nstatIn(t, sb, "TcpPassiveOpens")
	if po != *collectTCP(t, src).PassiveOpens && po != *hi.PassiveOpens {
		t.Errorf("nstat TcpPassiveOpens %d vs source %d", po, *hi.PassiveOpens)
	}
	t.Logf("namespace: ListenOverflows %d, ListenDrops %d, PassiveOpens %d (nstat %d)", *hi.ListenOverflows, *hi.ListenDrops, *hi.PassiveOpens, n)

	// Isolation: the host's counters are another namespace's. The host
	// has been making connections since boot; this namespace only ours.
	h := collectTCP(t, host)
	if *h.ActiveOpens == *hi.ActiveOpens && *h.PassiveOpens == *hi.PassiveOpens && *h.ListenOverflows == *hi.ListenOverflows {
		t.Fatalf("host and namespace counters identical (%+v): the namespace files are not bound to the namespace", *h)
	}
	t.Logf("host: ListenOverflows %d, ActiveOpens %d, PassiveOpens %d", *h.ListenOverflows, *h.ActiveOpens, *h.PassiveOpens)
}

// TestIntegrationTCPStatNamespaceReplaced deletes the namespace the files
// were opened in and checks the source reports it instead of reading the
// stale one forever.
func TestIntegrationTCPStatNamespaceGone(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{NoValkey: true})
	src := NewTCPStat(TCPStatConfig{NetNS: sb.NetNS})
	t.Cleanup(func() { src.Close() })
	collectTCP(t, src)
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	err := src.Collect(context.Background(), &sample.Sample{})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), sb.NetNS) {
		t.Fatalf("after the namespace was deleted: %v, want unavailable naming %s", err, sb.NetNS)
	}
}

// TestIntegrationTCPStatNamespaceReplaced re-creates the namespace under
// the same path: the kept-open files would still show the old namespace,
// so the source must notice the new inode and reopen.
func TestIntegrationTCPStatNamespaceReplaced(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{NoValkey: true})
	src := NewTCPStat(TCPStatConfig{NetNS: sb.NetNS})
	t.Cleanup(func() { src.Close() })
	// A refused dial inside the namespace: ActiveOpens and AttemptFails +1.
	err := netns.Do(sb.NetNS, func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:1", time.Second)
		if err == nil {
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	old := collectTCP(t, src)
	if *old.ActiveOpens == 0 || *old.AttemptFails == 0 {
		t.Fatalf("refused dial not counted in the namespace: %+v", *old)
	}
	for _, args := range [][]string{{"netns", "del", sb.Name}, {"netns", "add", sb.Name}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	fresh := collectTCP(t, src)
	if *fresh.ActiveOpens != 0 || *fresh.AttemptFails != 0 {
		t.Fatalf("after re-creating %s the source still reads the old namespace: %+v", sb.Name, *fresh)
	}
}

func conntrackLoaded() bool {
	_, err := os.Stat("/proc/sys/net/netfilter/nf_conntrack_count")
	return err == nil
}

func collectCT(t *testing.T, src *Conntrack) *sample.Conntrack {
	t.Helper()
	var s sample.Sample
	if err := src.Collect(context.Background(), &s); err != nil {
		t.Fatalf("collect conntrack: %v", err)
	}
	return s.Conntrack
}

// TestIntegrationConntrack makes conntrack track flows in a namespace (an
// nftables ct state rule) and checks count, max and the per-CPU counters
// through ctnetlink and through the proc files, against `conntrack -C`
// run in the namespace.
func TestIntegrationConntrack(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	if !conntrackLoaded() {
		out, err := exec.Command("modprobe", "nf_conntrack").CombinedOutput()
		t.Logf("nf_conntrack not loaded; modprobe: %v %s", err, out)
	}
	nl, err := NewConntrack(ConntrackConfig{NetNS: sb.NetNS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nl.Close() })
	if !conntrackLoaded() {
		// The module cannot be loaded here: the signal must say why.
		err := nl.Collect(context.Background(), &sample.Sample{})
		if err == nil || err.Error() != "unavailable: "+reasonNoConntrack {
			t.Fatalf("without nf_conntrack: %v, want %q", err, reasonNoConntrack)
		}
		return
	}
	proc, err := NewConntrack(ConntrackConfig{NetNS: sb.NetNS, Via: ViaProc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Close() })

	first := collectCT(t, nl)
	if first.Via != ViaNetlink {
		t.Fatalf("as root the per-CPU counters should come over ctnetlink, got via %q", first.Via)
	}
	if first.Max == nil || *first.Max == 0 {
		t.Fatalf("max = %v", first.Max)
	}

	for _, args := range [][]string{
		{"add", "table", "inet", "sgtest"},
		{"add", "chain", "inet", "sgtest", "in", "{ type filter hook input priority 0; }"},
		{"add", "rule", "inet", "sgtest", "in", "ct", "state", "established,related", "accept"},
	} {
		if out, err := sb.Command(context.Background(), "nft", args...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v %s", args, err, out)
		}
	}
	const held = 5
	for i := 0; i < held; i++ {
		c, err := sb.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}

	var ct *sample.Conntrack
	deadline := time.Now().Add(10 * time.Second)
	for {
		ct = collectCT(t, nl)
		if *ct.Count >= held || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if *ct.Count < held {
		t.Fatalf("conntrack count %d with %d tracked connections open", *ct.Count, held)
	}
	out, err := sb.Command(context.Background(), "conntrack", "-C").Output()
	if err != nil {
		t.Fatalf("conntrack -C in namespace: %v", err)
	}
	cli, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("conntrack -C output %q: %v", out, err)
	}
	pc := collectCT(t, proc)
	if pc.Via != ViaProc {
		t.Fatalf("forced proc backend reported via %q", pc.Via)
	}
	// Held connections stay; nothing else runs in the namespace.
	if cli != *ct.Count || *pc.Count != cli {
		t.Errorf("count: netlink source %d, proc source %d, conntrack -C %d", *ct.Count, *pc.Count, cli)
	}
	if *pc.Max != *ct.Max || *pc.Drop != *ct.Drop || *pc.EarlyDrop != *ct.EarlyDrop || *pc.InsertFailed != *ct.InsertFailed {
		t.Errorf("proc and netlink disagree: proc %+v netlink %+v", pc, ct)
	}
	host, err := NewConntrack(ConntrackConfig{Via: ViaProc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	t.Logf("namespace count %d (conntrack -C %d), max %d, drop %d, early_drop %d, insert_failed %d; host count %d",
		*ct.Count, cli, *ct.Max, *ct.Drop, *ct.EarlyDrop, *ct.InsertFailed, *collectCT(t, host).Count)
}

// TestIntegrationNIC reads real ethtool statistics: a namespace with only
// lo, then with a veth pair (driver veth, no ENA counters), then the
// host's interfaces, whose drivers must match `ethtool -i`.
func TestIntegrationNIC(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{NoValkey: true})
	src := NewNIC(NICConfig{NetNS: sb.NetNS, TargetIP: "127.0.0.1"})
	t.Cleanup(func() { src.Close() })
	now := time.Now()
	src.now = func() time.Time { return now } // the re-check backoff's clock
	err := src.Collect(context.Background(), &sample.Sample{})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no network interface up besides loopback") {
		t.Fatalf("namespace with only lo: %v", err)
	}
	for _, args := range [][]string{
		{"link", "add", "sgv0", "type", "veth", "peer", "name", "sgv1"},
		{"link", "set", "sgv0", "up"},
		{"link", "set", "sgv1", "up"},
	} {
		if out, err := sb.Command(context.Background(), "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	// The namespace is asked again only after the backoff (1 s at first).
	err = src.Collect(context.Background(), &sample.Sample{})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no network interface up besides loopback") {
		t.Fatalf("within the backoff: %v, want the previous answer", err)
	}
	now = now.Add(nicRecheckMin)
	err = src.Collect(context.Background(), &sample.Sample{})
	want := "unavailable: no ENA allowance counters (interfaces: sgv0 driver veth, sgv1 driver veth)"
	if err == nil || err.Error() != want {
		t.Fatalf("veth pair: %v, want %q", err, want)
	}

	// The host: compare with ethtool(8) for whatever interfaces it has.
	hostSrc := NewNIC(NICConfig{})
	t.Cleanup(func() { hostSrc.Close() })
	var s sample.Sample
	err = hostSrc.Collect(context.Background(), &s)
	b, berr := openEthtoolBackend("")
	if berr != nil {
		t.Fatal(berr)
	}
	defer b.Close()
	links, lerr := b.Links()
	if lerr != nil {
		t.Fatal(lerr)
	}
	names := chooseInterfaces(links, nil)
	sort.Strings(names)
	if err == nil {
		t.Logf("host has ENA counters on %v", s.NIC.Interfaces)
		return
	}
	var descs []string
	for _, n := range names {
		out, err := exec.Command("ethtool", "-i", n).Output()
		if err != nil {
			t.Fatalf("ethtool -i %s: %v", n, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if d, ok := strings.CutPrefix(line, "driver: "); ok {
				descs = append(descs, n+" driver "+d)
			}
		}
	}
	if len(names) == 0 {
		return
	}
	if !strings.Contains(err.Error(), "interfaces: "+strings.Join(descs, ", ")) {
		t.Fatalf("host: %v; ethtool -i says %v", err, descs)
	}
	t.Logf("host: %v", err)
}
