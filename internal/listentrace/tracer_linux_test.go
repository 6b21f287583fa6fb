//go:build linux && (amd64 || arm64)

package listentrace

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestTracerLoopback loads the programs against a loopback listener in
// stormguard's own namespace: SYNs, accepts and the wait of connections
// left in the accept queue for a known time.
func TestTracerLoopback(t *testing.T) {
	if Off() {
		// Not a missing capability: whoever set the variable asked for
		// eBPF off, so there is nothing to load (not a CI skip).
		t.Skipf("%s turns eBPF off", Env)
	}
	if os.Geteuid() != 0 {
		sandboxtest.SkipOrFail(t, "needs root to load BPF programs")
	}
	// A plain TCP listener: Go listens with MPTCP by default, whose
	// accept() returns the MPTCP socket, not the TCP child.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	tr, err := Open(context.Background(), "", uint16(port), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const n = 5
	const hold = 200 * time.Millisecond
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	start := time.Now()
	// The connections wait in the accept queue for at least hold: that
	// is the quantity measured, not a synchronisation.
	time.Sleep(hold)
	for range n {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	upper := time.Since(start) + 50*time.Millisecond
	c, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	if c.SYNs < n || c.Accepts != n || c.Drops != 0 || c.Listeners != 1 {
		t.Fatalf("syns=%d accepts=%d drops=%d listeners=%d, want >=%d, %d, 0, 1", c.SYNs, c.Accepts, c.Drops, c.Listeners, n, n)
	}
	if c.MaxWait < hold || c.MaxWait > upper {
		t.Fatalf("max wait %v, want within [%v, %v]", c.MaxWait, hold, upper)
	}
	p50, ok := Quantile(c, 0.5)
	if !ok || p50 < hold*9/10 || p50 > upper {
		t.Fatalf("p50 %v (ok=%v), want about %v", p50, ok, hold)
	}
	// A second Read starts a new interval for the longest wait.
	c2, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	if c2.MaxWait != 0 || c2.Accepts != n {
		t.Fatalf("second read: max %v accepts %d, want 0 and %d", c2.MaxWait, c2.Accepts, n)
	}
}
