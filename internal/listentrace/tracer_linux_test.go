//go:build linux && (amd64 || arm64)

package listentrace

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestTracerLoopback loads the programs against a loopback listener in
// stormguard's own namespace: SYNs, accepts and the wait of connections
// left in the accept queue for a known time; with the accept programs'
// typed loads and with their probe-read fallback.
func TestTracerLoopback(t *testing.T) {
	for _, probe := range []bool{false, true} {
		t.Run("probe="+strconv.FormatBool(probe), func(t *testing.T) { testTracerLoopback(t, probe) })
	}
}

func testTracerLoopback(t *testing.T, probe bool) {
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
	tr, err := open(context.Background(), "", uint16(port), nil, probe)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if !probe && tr.ProbeReads {
		t.Log("this kernel refused the typed loads (before 6.2?): both passes test the probe reads")
	}
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
	// Those reads were raw (rawMaps) and read what the library reads.
	if tr.rawOff.Load() {
		t.Fatal("raw map reads failed and Read fell back to the library")
	}
	lib, err := tr.readLib()
	if err != nil {
		t.Fatal(err)
	}
	if lib != c2 {
		t.Errorf("library read %+v\nraw read %+v; want the same (nothing happened between)", lib, c2)
	}
}

// TestTracerCloseDuringRead closes a tracer while goroutines read it (the
// agent stopping under a sampler's abandoned Read): -race must see no race,
// no read may fail with anything but ErrClosed, and reads after Close
// return ErrClosed.
func TestTracerCloseDuringRead(t *testing.T) {
	if Off() {
		t.Skipf("%s turns eBPF off", Env)
	}
	if os.Geteuid() != 0 {
		sandboxtest.SkipOrFail(t, "needs root to load BPF programs")
	}
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tr, err := Open(context.Background(), "", uint16(ln.Addr().(*net.TCPAddr).Port), nil)
	if err != nil {
		t.Fatal(err)
	}
	const readers = 4
	// Each reader signals after its first successful read, so Close
	// surely meets reads in flight or queued behind it.
	started := make(chan struct{}, readers)
	errs := make(chan error, readers)
	for i := range readers {
		go func() {
			first := true
			for {
				var err error
				if i%2 == 0 {
					_, err = tr.Read()
				} else {
					_, _, err = tr.Counts()
					if errors.Is(err, ErrNoListener) {
						err = nil
					}
				}
				if err != nil {
					errs <- err
					return
				}
				if first {
					started <- struct{}{}
					first = false
				}
			}
		}()
	}
	for range readers {
		<-started
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	for range readers {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Errorf("read during Close: %v, want ErrClosed", err)
		}
	}
	if _, err := tr.Read(); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v, want ErrClosed", err)
	}
	if _, _, err := tr.Counts(); !errors.Is(err, ErrClosed) {
		t.Errorf("Counts after Close: %v, want ErrClosed", err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestTracerRelearnsReplacedListener: one of two SO_REUSEPORT listeners
// is replaced by a new one (opened before the old one closes, so it is
// surely at another address) while the other stays. The learned set still
// has a live listener, so "none known" never asks for a walk; the dead
// one, pruned at the next read, must. Afterwards both live listeners are
// known (a Valkey restart where one new socket reuses an old address and
// the other does not is the same case: its other family's overflows and
// full-queue wake-up would be lost).
func TestTracerRelearnsReplacedListener(t *testing.T) {
	if Off() {
		t.Skipf("%s turns eBPF off", Env)
	}
	if os.Geteuid() != 0 {
		sandboxtest.SkipOrFail(t, "needs root to load BPF programs")
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	lc.SetMultipathTCP(false)
	listen := func(addr string) net.Listener {
		t.Helper()
		ln, err := lc.Listen(context.Background(), "tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	stays := listen("127.0.0.1:0")
	port := stays.Addr().(*net.TCPAddr).Port
	addr := "127.0.0.1:" + strconv.Itoa(port)
	old := listen(addr)
	tr, err := Open(context.Background(), "", uint16(port), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	listeners := func() uint64 {
		t.Helper()
		c, err := tr.Read()
		if err != nil {
			t.Fatal(err)
		}
		return c.Listeners
	}
	if n := listeners(); n != 2 {
		t.Fatalf("%d listeners learned at Open, want 2", n)
	}
	walks := tr.Walks()
	listen(addr) // the replacement, at a new address
	old.Close()
	deadline := time.Now().Add(10 * time.Second)
	for listeners() != 2 || tr.Walks() == walks {
		if time.Now().After(deadline) {
			t.Fatalf("after replacing a listener: %d known, %d walks (%d before); want 2 and a new walk", listeners(), tr.Walks(), walks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTracerIgnoresOtherNamespacesAccepts frees children of the watched
// listener without accepting them (their times stay in the programs'
// cache), then has a listener on the same port in another namespace accept
// as many connections: its sockets come from the same kernel cache, so
// some sit at the addresses the freed children had. None may count as an
// accept of the watched port.
func TestTracerIgnoresOtherNamespacesAccepts(t *testing.T) {
	if Off() {
		t.Skipf("%s turns eBPF off", Env)
	}
	sb := sandboxtest.New(t, sandbox.Options{})
	listen := func(ns string, addr string) net.Listener {
		var ln net.Listener
		err := netns.Do(ns, func() error {
			var lc net.ListenConfig
			lc.SetMultipathTCP(false)
			var err error
			ln, err = lc.Listen(context.Background(), "tcp4", addr)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	// The watched listener, in stormguard's namespace; the other one on
	// the same port in the sandbox's.
	watched := listen("", "127.0.0.1:0")
	defer watched.Close()
	port := watched.Addr().(*net.TCPAddr).Port
	other := listen(sb.NetNS, watched.Addr().String())
	defer other.Close()
	tr, err := Open(context.Background(), "", uint16(port), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const n = 200
	for range n {
		c, err := net.Dial("tcp4", watched.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	watched.Close() // frees the queued children, never accepted
	accepted := make(chan error, 1)
	go func() {
		for range n {
			c, err := other.Accept()
			if err != nil {
				accepted <- err
				return
			}
			c.Close()
		}
		accepted <- nil
	}()
	for range n {
		var c net.Conn
		if err := netns.Do(sb.NetNS, func() error {
			var err error
			c, err = net.Dial("tcp4", other.Addr().String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	c, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	if c.Accepts != 0 {
		t.Fatalf("accepts = %d, want 0 (the other namespace's listener's)", c.Accepts)
	}
	if c.SYNs != n {
		t.Fatalf("SYNs = %d, want %d (the watched listener's only)", c.SYNs, n)
	}
}
