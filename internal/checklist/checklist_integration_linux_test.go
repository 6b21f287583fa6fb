//go:build linux

package checklist_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/checklist"
	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// audit gathers facts for sb's Valkey (nil addr: kernel only) and
// evaluates them.
func audit(t *testing.T, sb *sandbox.Sandbox, withValkey bool) (*checklist.Facts, []checklist.Finding) {
	t.Helper()
	o := checklist.Options{NetNS: sb.NetNS, Window: 300 * time.Millisecond, Timeout: 5 * time.Second}
	if withValkey {
		a, err := addr.Parse(sb.Addr())
		if err != nil {
			t.Fatal(err)
		}
		o.Valkey = &a
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, err := checklist.Gather(ctx, o)
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	fs := checklist.Evaluate(f)
	for _, fd := range fs {
		t.Logf("%-8s %s: %s", fd.Severity, fd.ID, fd.Evidence)
	}
	return f, fs
}

func find(t *testing.T, fs []checklist.Finding, id string) checklist.Finding {
	t.Helper()
	for _, f := range fs {
		if f.ID == id {
			return f
		}
	}
	t.Fatalf("no finding %q", id)
	return checklist.Finding{}
}

func want(t *testing.T, fs []checklist.Finding, id string, sev checklist.Severity) checklist.Finding {
	t.Helper()
	f := find(t, fs, id)
	if f.Severity != sev {
		t.Errorf("%s: severity %s, want %s (evidence: %s)", id, f.Severity, sev, f.Evidence)
	}
	return f
}

func wantOneOf(t *testing.T, fs []checklist.Finding, id string, sevs ...checklist.Severity) checklist.Finding {
	t.Helper()
	f := find(t, fs, id)
	for _, s := range sevs {
		if f.Severity == s {
			return f
		}
	}
	t.Errorf("%s: severity %s, want one of %v (evidence: %s)", id, f.Severity, sevs, f.Evidence)
	return f
}

// dialNS opens a TCP connection to sb's Valkey from inside its namespace.
func dialNS(ctx context.Context, sb *sandbox.Sandbox, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(sb.NetNS, func() error {
		d := net.Dialer{Timeout: timeout}
		var err error
		c, err = d.DialContext(ctx, "tcp", sb.Addr())
		return err
	})
	return c, err
}

// command sends one inline command and returns the first reply line.
func command(c net.Conn, cmd string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestIntegrationWellTuned(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{
		Sysctls: map[string]string{
			"net.core.somaxconn": "4096", "net.ipv4.tcp_syncookies": "1", "net.ipv4.tcp_abort_on_overflow": "0",
		},
		ValkeyArgs:   []string{"--tcp-backlog", "511", "--maxclients", "10000", "--tcp-keepalive", "300", "--timeout", "300"},
		ValkeyPrefix: []string{"prlimit", "--nofile=20000"},
	})
	f, fs := audit(t, sb, true)
	for _, fd := range fs {
		if fd.Severity >= checklist.Warning {
			t.Errorf("well-tuned sandbox: %s is %s: %s", fd.ID, fd.Severity, fd.Evidence)
		}
	}
	want(t, fs, "somaxconn-truncates-backlog", checklist.OK)
	want(t, fs, "syncookies-disabled", checklist.OK)
	want(t, fs, "abort-on-overflow-enabled", checklist.OK)
	want(t, fs, "listen-overflows-seen", checklist.OK)
	want(t, fs, "rejected-connections-seen", checklist.OK)
	want(t, fs, "clients-near-maxclients", checklist.OK)
	fd := want(t, fs, "fd-limit-below-maxclients", checklist.OK)
	if f.Process.PID != sb.ValkeyPID() {
		t.Errorf("found Valkey pid %d via %q, want %d", f.Process.PID, f.Process.Via, sb.ValkeyPID())
	}
	if !strings.Contains(fd.Evidence, "20000") {
		t.Errorf("fd evidence %q does not show the limit 20000", fd.Evidence)
	}
	wantOneOf(t, fs, "conntrack-near-full", checklist.OK, checklist.Info)
	want(t, fs, "nic-allowance-exceeded", checklist.Info) // the sandbox has no ENA NIC
	want(t, fs, "valkey-version", checklist.OK)
	// CLIENT LIST is safe here: one client of 10000.
	if f.Clients == nil {
		t.Errorf("CLIENT LIST not read: %s", f.ClientsErr)
	}
	want(t, fs, "clients-per-address", checklist.OK)
}

func TestIntegrationKernelMisconfigured(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{
		Sysctls: map[string]string{
			"net.core.somaxconn": "64", "net.ipv4.tcp_syncookies": "0", "net.ipv4.tcp_abort_on_overflow": "1",
			"net.ipv4.tcp_max_syn_backlog": "128",
		},
		ValkeyArgs: []string{"--tcp-backlog", "511", "--tcp-keepalive", "0"},
		// maxclients 10000 needs 10032 fds: Valkey cuts maxclients to 96.
		ValkeyPrefix: []string{"prlimit", "--nofile=128"},
	})
	f, fs := audit(t, sb, true)
	som := want(t, fs, "somaxconn-truncates-backlog", checklist.Warning)
	if !strings.Contains(som.Evidence, "= 64") || !strings.Contains(som.Evidence, "511") {
		t.Errorf("somaxconn evidence lacks the values: %s", som.Evidence)
	}
	if !strings.Contains(som.Fix, "net.core.somaxconn=511") {
		t.Errorf("somaxconn fix %q", som.Fix)
	}
	want(t, fs, "syncookies-disabled", checklist.Warning)
	want(t, fs, "abort-on-overflow-enabled", checklist.Warning)
	want(t, fs, "syn-backlog-small", checklist.Warning)
	want(t, fs, "tcp-keepalive-disabled", checklist.Warning)
	fd := want(t, fs, "fd-limit-below-maxclients", checklist.Warning)
	if !strings.Contains(fd.Evidence, "128") || !strings.Contains(fd.Evidence, "maxclients 96") {
		t.Errorf("fd evidence %q", fd.Evidence)
	}
	if f.Process.PID != sb.ValkeyPID() {
		t.Errorf("found Valkey pid %d via %q, want %d", f.Process.PID, f.Process.Via, sb.ValkeyPID())
	}

	// Lower the running server's limit below maxclients+32: accept() will
	// hit EMFILE before maxclients.
	out, err := exec.Command("prlimit", "--pid", strconv.Itoa(sb.ValkeyPID()), "--nofile=64:64").CombinedOutput()
	if err != nil {
		t.Fatalf("prlimit: %v %s", err, out)
	}
	_, fs = audit(t, sb, true)
	want(t, fs, "fd-limit-below-maxclients", checklist.Critical)
}

// TestIntegrationConntrackTracked makes the sandbox's namespace track
// connections (a stateful nft rule) and checks the audit sees its own
// connection in the table.
func TestIntegrationConntrackTracked(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	if _, err := exec.LookPath("nft"); err != nil {
		sandboxtest.SkipOrFail(t, "nft not installed")
	}
	rules := "add table inet sgtest\nadd chain inet sgtest in { type filter hook input priority 0; }\nadd rule inet sgtest in ct state established accept\n"
	cmd := sb.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		sandboxtest.SkipOrFail(t, fmt.Sprintf("cannot add a stateful nft rule (conntrack unavailable?): %v %s", err, out))
	}
	f, fs := audit(t, sb, true)
	if !f.Conntrack.Loaded {
		t.Fatalf("conntrack not loaded after a ct rule: %s", f.Conntrack.Err)
	}
	wantOneOf(t, fs, "conntrack-near-full", checklist.OK, checklist.Info)
	if f.Conntrack.Count == nil || *f.Conntrack.Count == 0 {
		t.Errorf("conntrack count nil or 0, want > 0 with the audit's own connection tracked")
	}
	want(t, fs, "conntrack-tracks-valkey-port", checklist.Info)
	want(t, fs, "conntrack-projected-fill", checklist.OK)
}

func TestIntegrationListenOverflows(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{
		Sysctls:    map[string]string{"net.core.somaxconn": "4", "net.ipv4.tcp_syncookies": "1"},
		ValkeyArgs: []string{"--tcp-backlog", "4"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	thaw := sandboxtest.Freeze(t, sb)

	// Keep knocking while Valkey is frozen, bounded in count and time, so
	// overflows happen during the audit window too.
	var mu sync.Mutex
	var conns []net.Conn
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 400; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c, err := dialNS(ctx, sb, 100*time.Millisecond)
			if err == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()

	// Wait until the kernel has counted overflows.
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := checklist.ReadProcCounters(ctx, sb.NetNS)
		if err != nil {
			t.Fatal(err)
		}
		if m["TcpExt.ListenOverflows"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ListenOverflows after 20s of dialing a frozen Valkey")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Valkey is frozen: audit the kernel only, while overflows continue.
	_, fs := audit(t, sb, false)
	want(t, fs, "listen-overflows-seen", checklist.Critical)
	want(t, fs, "valkey-not-checked", checklist.Info)

	close(stop)
	wg.Wait()
	stop = make(chan struct{})
	thaw()
	if err := sb.WaitReady(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_, fs = audit(t, sb, true)
	want(t, fs, "listen-overflows-seen", checklist.Warning)
}

func TestIntegrationMaxclients(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--maxclients", "10"}})
	ctx := context.Background()
	var ok []net.Conn
	rejected := 0
	for i := 0; i < 12; i++ {
		c, err := dialNS(ctx, sb, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		line, err := command(c, "PING")
		switch {
		case err == nil && line == "+PONG":
			ok = append(ok, c)
			continue
		case strings.Contains(line, "max number of clients"), errors.Is(err, syscall.ECONNRESET):
			rejected++
		default:
			t.Fatalf("client %d: %q %v", i, line, err)
		}
		c.Close()
	}
	defer func() {
		for _, c := range ok {
			c.Close()
		}
	}()
	if len(ok) != 10 || rejected != 2 {
		t.Fatalf("%d admitted, %d rejected; want 10 and 2", len(ok), rejected)
	}

	// Full: the audit itself is refused.
	f, fs := audit(t, sb, true)
	if f.Valkey != nil {
		t.Fatalf("audit got in at maxclients")
	}
	want(t, fs, "clients-near-maxclients", checklist.Critical)
	want(t, fs, "valkey-not-checked", checklist.Info)

	// One slot free: the audit gets the tenth slot and sees 10/10.
	ok[0].Close()
	ok = ok[1:]
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, fs = audit(t, sb, true)
		if f.Valkey != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if f.Valkey == nil {
		t.Fatalf("audit could not connect with a free slot: %s", f.ValkeyErr)
	}
	rej := want(t, fs, "rejected-connections-seen", checklist.Warning)
	if !strings.Contains(rej.Evidence, "rejected_connections") {
		t.Errorf("evidence %q", rej.Evidence)
	}
	want(t, fs, "clients-near-maxclients", checklist.Critical)
	// CLIENT LIST is skipped this close to maxclients.
	want(t, fs, "clients-not-checked", checklist.Info)

	// 7 of 10: warning.
	for _, c := range ok[:2] {
		c.Close()
	}
	ok = ok[2:]
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, fs = audit(t, sb, true)
		if find(t, fs, "clients-near-maxclients").Severity == checklist.Warning || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	want(t, fs, "clients-near-maxclients", checklist.Warning)
}

func TestIntegrationClientHygiene(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--maxclients", "1000"}})
	ctx := context.Background()
	for i := 0; i < 15; i++ {
		c, err := dialNS(ctx, sb, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if line, err := command(c, "CLIENT SETINFO LIB-NAME valkey-py"); err != nil || line != "+OK" {
			t.Fatalf("SETINFO: %q %v", line, err)
		}
	}
	f, fs := audit(t, sb, true)
	if len(f.Clients) != 16 {
		t.Errorf("CLIENT LIST has %d clients, want 15 + the audit", len(f.Clients))
	}
	want(t, fs, "clients-young-connections", checklist.Warning)
	lib := want(t, fs, "clients-library-no-backoff", checklist.Info)
	if !strings.Contains(lib.Evidence, "valkey-py ×15") {
		t.Errorf("library evidence %q", lib.Evidence)
	}
	pa := want(t, fs, "clients-per-address", checklist.OK)
	if !strings.Contains(pa.Evidence, "127.0.0.1: 15") {
		t.Errorf("per-address evidence %q", pa.Evidence)
	}
}

func TestIntegrationKernelOnly(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{NoValkey: true})
	f, fs := audit(t, sb, false)
	if f.Valkey != nil {
		t.Fatal("Valkey facts without an address")
	}
	want(t, fs, "valkey-not-checked", checklist.Info)
	nic := want(t, fs, "nic-allowance-exceeded", checklist.Info)
	if !strings.Contains(nic.Title, "not available") {
		t.Errorf("nic title %q", nic.Title)
	}
	// The kernel rules still ran from the namespace's own sysctls.
	want(t, fs, "somaxconn-truncates-backlog", checklist.OK)
	for _, fd := range fs {
		if fd.Area == checklist.AreaValkey && fd.ID != "valkey-not-checked" {
			t.Errorf("Valkey rule %s ran without Valkey", fd.ID)
		}
	}
}
