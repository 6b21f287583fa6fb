//go:build linux

package source

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/listentrace"
	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// ssCloseWait counts the port's CLOSE_WAIT sockets that no process owns
// yet, as ss sees them: the independent count of listen.abandoned. A socket
// Valkey already accepted (e.g. the sandbox's readiness check, closed by its
// client just as Valkey was frozen) is in CLOSE_WAIT too, but ss -p names
// its owner, and it is not waiting in the accept queue.
func ssCloseWait(t testing.TB, sb *sandbox.Sandbox) int {
	t.Helper()
	out, err := sb.Command(context.Background(), "ss", "-Htanp", "state", "close-wait", "sport", "=", ":"+strconv.Itoa(sb.Port)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss in namespace: %v: %s", err, out)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) != "" && !strings.Contains(line, "users:(") {
			n++
		}
	}
	return n
}

// TestIntegrationListenAbandoned freezes Valkey, connects clients that
// close again at once while their connections wait in the accept queue
// (what a client with a short connect timeout does to a slow server), and
// checks that listen.abandoned counts exactly those, not the queued
// connections whose client is still there, and falls back to 0 once
// Valkey accepts and closes them. Both ways the source runs: walking the
// established hash, and with the eBPF programs keeping SYN_RECV and
// ESTABLISHED (listen.abandoned was always null then).
func TestIntegrationListenAbandoned(t *testing.T) {
	t.Run("walk", func(t *testing.T) { testListenAbandoned(t, false) })
	t.Run("kernel-counts", func(t *testing.T) { testListenAbandoned(t, true) })
}

func testListenAbandoned(t *testing.T, kernelCounts bool) {
	sb := sandboxtest.New(t, sandbox.Options{})
	l := openTestListenq(t, sb, -1)
	if kernelCounts {
		l.kernelCounts = openEBPFTest(t, sb).tr.Counts
	}
	s := waitSample(t, l, "a first count", func(s *sample.Sample) bool { return s.Listen.Abandoned != nil })
	if *s.Listen.Abandoned != 0 {
		t.Fatalf("listen.abandoned = %d before any client left, want 0", *s.Listen.Abandoned)
	}

	sandboxtest.Freeze(t, sb)
	const gone, staying = 20, 5
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range gone + staying {
		c, err := sb.Dial(ctx)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if i < gone {
			c.Close() // FIN: the queued child moves to CLOSE_WAIT
		} else {
			defer c.Close()
		}
	}
	s = waitSample(t, l, fmt.Sprintf("%d abandoned connections", gone), func(s *sample.Sample) bool {
		return s.Listen.Abandoned != nil && *s.Listen.Abandoned == gone
	})
	if n := ssCloseWait(t, sb); n != gone {
		t.Errorf("ss sees %d CLOSE_WAIT sockets on the port that no process owns, want %d", n, gone)
	}
	if s.Listen.Depth == nil || *s.Listen.Depth < gone+staying {
		t.Errorf("listen.depth = %s, want at least %d (abandoned connections still fill the queue)", u(s.Listen.Depth), gone+staying)
	}

	if err := sb.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitSample(t, l, "abandoned connections accepted and closed", func(s *sample.Sample) bool {
		return s.Listen.Abandoned != nil && *s.Listen.Abandoned == 0
	})
	if kernelCounts {
		l.cmu.Lock()
		defer l.cmu.Unlock()
		if l.counted {
			t.Errorf("with the kernel counts a full SYN_RECV/ESTABLISHED walk ran")
		}
	}
}

// dialNS dials 127.0.0.1:port inside the sandbox's namespace.
func dialNS(t testing.TB, sb *sandbox.Sandbox, port int) net.Conn {
	t.Helper()
	var c net.Conn
	err := netns.Do(sb.NetNS, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 10*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial port %d in namespace: %v", port, err)
	}
	return c
}

// tlsCommand opens a TLS connection to port, sends one inline command and
// returns its first reply line (the handshake completes on Valkey's side
// before it answers).
func tlsCommand(t testing.TB, sb *sandbox.Sandbox, port int, cmd string) string {
	t.Helper()
	raw := dialNS(t, sb, port)
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		t.Fatalf("TLS %s: %v", cmd, err)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("TLS %s: %v", cmd, err)
	}
	if strings.HasPrefix(line, "$") { // bulk reply: read its body
		n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatalf("TLS %s: %v", cmd, err)
		}
		return string(b)
	}
	return line
}

// infoField reads one INFO field over TLS.
func infoField(t testing.TB, sb *sandbox.Sandbox, port int, section, field string) uint64 {
	t.Helper()
	for _, line := range strings.Split(tlsCommand(t, sb, port, "INFO "+section), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO %s: %v", field, err)
			}
			return n
		}
	}
	t.Fatalf("INFO %s has no %s", section, field)
	return 0
}

// TestIntegrationHandshakePending samples a TLS-only port of a real Valkey
// through every source, as the agent does, and checks handshake_pending
// over three intervals: clients that complete their TLS handshake leave
// nothing pending; connections Valkey accepted whose handshake never
// finishes (they send no ClientHello, like clients that gave up) count
// exactly; without eBPF the key is null and errors.ebpf says why.
func TestIntegrationHandshakePending(t *testing.T) {
	sandboxtest.Require(t)
	certs, err := sandbox.MakeCerts(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	const tlsPort = 6391
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: certs.ValkeyArgs(tlsPort, "no")})
	target := Target{Addr: addr.Addr{Host: "127.0.0.1", Port: tlsPort, TLS: true, TLSInsecure: true}, NetNS: sb.NetNS}
	set := Open(context.Background(), Options{Target: target, ListenPoll: -1})
	t.Cleanup(func() { set.Close() })
	sm := &sample.Sampler{Target: target.Name(), Port: tlsPort, Sources: set.Sources, Interval: time.Second, Deadline: 5 * time.Second}
	once := func() *sample.Sample { return sm.Once(context.Background()) }

	if listentrace.Off() {
		for range 3 {
			s := once()
			if s.HandshakePending != nil || s.Errors["ebpf"] == "" {
				t.Fatalf("eBPF off: handshake_pending = %s, errors.ebpf = %q; want null and a reason", u(s.HandshakePending), s.Errors["ebpf"])
			}
		}
		return
	}

	// The first samples have no previous one, or no Valkey fields yet.
	deadline := time.Now().Add(20 * time.Second)
	for s := once(); s.HandshakePending == nil; s = once() {
		if time.Now().After(deadline) {
			t.Fatalf("no handshake_pending within 20s; errors %v", s.Errors)
		}
		time.Sleep(100 * time.Millisecond)
	}

	const done = 5
	for range done {
		if r := tlsCommand(t, sb, tlsPort, "PING"); r != "+PONG\r\n" {
			t.Fatalf("PING over TLS: %q", r)
		}
	}
	if s := once(); s.HandshakePending == nil || *s.HandshakePending != 0 {
		t.Fatalf("after %d complete TLS clients: handshake_pending = %s (errors %v), want 0", done, u(s.HandshakePending), s.Errors)
	}

	// Connections that never send a ClientHello: Valkey accepts them and
	// counts them in connected_clients, but their setup never completes.
	base := infoField(t, sb, tlsPort, "clients", "connected_clients")
	const stuck = 12
	for range stuck {
		c := dialNS(t, sb, tlsPort)
		defer c.Close()
	}
	deadline = time.Now().Add(20 * time.Second)
	for infoField(t, sb, tlsPort, "clients", "connected_clients") < base+stuck {
		if time.Now().After(deadline) {
			t.Fatalf("Valkey did not accept %d connections within 20s", stuck)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := once(); s.HandshakePending == nil || *s.HandshakePending != stuck {
		t.Fatalf("after %d stuck handshakes: handshake_pending = %s (errors %v), want %d", stuck, u(s.HandshakePending), s.Errors, stuck)
	}
}
