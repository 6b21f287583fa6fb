//go:build linux

package source

import (
	"bufio"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/listentrace"
	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// openEBPFTest opens the eBPF source for the sandbox's Valkey, skipping
// when STORMGUARD_EBPF turns eBPF off: whoever set it asked for eBPF off,
// so this is not a missing capability that CI must fail on.
func openEBPFTest(t *testing.T, sb *sandbox.Sandbox) *ebpfSource {
	t.Helper()
	if listentrace.Off() {
		t.Skipf("%s turns eBPF off", listentrace.Env)
	}
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	src, err := openEBPF(context.Background(), Options{Target: Target{Addr: a, NetNS: sb.NetNS}})
	if err != nil {
		t.Fatalf("open ebpf source: %v", err)
	}
	e := src.(*ebpfSource)
	t.Cleanup(func() { e.Close() })
	return e
}

func collectEBPF(t *testing.T, e *ebpfSource) *sample.Sample {
	t.Helper()
	s := &sample.Sample{}
	if err := e.Collect(context.Background(), s); err != nil {
		t.Fatalf("collect ebpf: %v", err)
	}
	return s
}

// listenOther opens a second plain TCP listener in the namespace, on
// another port, which must never be counted.
func listenOther(t *testing.T, nsPath string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := netns.Do(nsPath, func() error {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestIntegrationEBPFAcceptWait freezes Valkey for a known time while
// clients connect, and checks the accept wait the kernel measured against
// the clients' own clocks, the SYN count against the dials made, and that a
// second listener in the namespace is not counted.
//
// The clients' clocks bracket each connection's wait without depending on
// when the Go scheduler runs them: its handshake completed between "before
// dial" and "dial returned", and Valkey accepted it between "SIGCONT sent"
// and "reply read". So the wait lies in [SIGCONT − dial returned, reply −
// before dial]; unloaded the bracket is a few ms wide, on a loaded machine
// wider, and the kernel's figure must fall inside it (±10%).
func TestIntegrationEBPFAcceptWait(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	e := openEBPFTest(t, sb)
	other := listenOther(t, sb.NetNS)
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	base, err := e.tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	collectEBPF(t, e) // starts the interval measured below

	sandboxtest.Freeze(t, sb)
	const clients = 20
	const stall = 400 * time.Millisecond
	waits := make([]time.Duration, clients) // dial returned → reply read
	lower := make([]time.Time, clients)     // dial returned
	upper := make([]time.Duration, clients) // before dial → reply read
	errs := make(chan error, clients)
	var dialed, wg sync.WaitGroup
	dialed.Add(clients)
	wg.Add(clients)
	for i := range clients {
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			c, err := sb.Dial(ctx)
			connected := time.Now()
			lower[i] = connected
			dialed.Done()
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("PING\r\n")); err != nil {
				errs <- err
				return
			}
			if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
				errs <- err
				return
			}
			waits[i] = time.Since(connected)
			upper[i] = time.Since(start)
		}()
	}
	for range 5 {
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
	dialed.Wait()
	// The stall is the quantity measured, not a synchronisation: every
	// handshake above has completed and waits in Valkey's accept queue.
	time.Sleep(stall)
	resumed := time.Now()
	if err := sb.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("client: %v", err)
	}
	s := collectEBPF(t, e)
	cur, err := e.tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	if got := cur.SYNs - base.SYNs; got != clients {
		t.Errorf("SYNs to the port = %d, want %d (the other listener's must not count)", got, clients)
	}
	if got := cur.Accepts - base.Accepts; got != clients {
		t.Errorf("accepts = %d, want %d (the other listener's must not count)", got, clients)
	}
	if s.SynRate == nil || *s.SynRate <= 0 {
		t.Errorf("syn_rate = %v, want > 0", s.SynRate)
	}
	var lo, hi time.Duration // the bracket of the longest wait
	for i := range clients {
		lo = max(lo, resumed.Sub(lower[i]))
		hi = max(hi, upper[i])
	}
	slices.Sort(waits)
	aw := s.AcceptWaitMS
	if aw == nil || aw.Max == nil || aw.P99 == nil || aw.P50 == nil {
		t.Fatalf("accept_wait_ms = %+v, want values", aw)
	}
	t.Logf("accept wait: kernel p50 %.1f p99 %.1f max %.1f ms; clients: longest wait in [%v, %v], dial returned → reply %v–%v",
		*aw.P50, *aw.P99, *aw.Max, lo, hi, waits[0], waits[len(waits)-1])
	// 20 connections: the p99 is the longest wait.
	within := func(name string, gotMS float64) {
		loMS, hiMS := float64(lo.Microseconds())/1000, float64(hi.Microseconds())/1000
		if gotMS < 0.9*loMS || gotMS > 1.1*hiMS {
			t.Errorf("%s = %.1f ms, outside the clients' bracket [%.1f, %.1f] ms ±10%%", name, gotMS, loMS, hiMS)
		}
	}
	within("accept_wait_ms.max", *aw.Max)
	within("accept_wait_ms.p99", *aw.P99)
	if *aw.Max < float64(stall.Milliseconds()) {
		t.Errorf("max wait %.1f ms is shorter than the %v stall", *aw.Max, stall)
	}
	if s.AcceptWaitHist == nil || s.AcceptWaitHist.Count < clients {
		t.Errorf("histogram = %+v, want >= %d observations", s.AcceptWaitHist, clients)
	}
}

// TestIntegrationEBPFOverflow storms a frozen Valkey behind an accept queue
// of 64: the first SYN to the full queue wakes the source at once, and
// listen.overflows_port then equals the namespace's ListenOverflows delta
// (Valkey is the namespace's only listener that overflows).
func TestIntegrationEBPFOverflow(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{"net.core.somaxconn": "64"}})
	e := openEBPFTest(t, sb)
	tcp := NewTCPStat(TCPStatConfig{NetNS: sb.NetNS})
	t.Cleanup(func() { tcp.Close() })
	// One connection shows the programs Valkey's listening socket.
	if err := sb.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	s0 := collectEBPF(t, e)
	if s0.PortOverflows == nil {
		t.Fatal("overflows_port is null after a connection: listener not learned")
	}
	ns0 := *collectTCP(t, tcp).ListenOverflows

	sandboxtest.Freeze(t, sb)
	woke := make(chan time.Duration, 1)
	go func() {
		select {
		case <-e.Wake():
			d, _ := e.tr.WakeDelay()
			woke <- d
		case <-time.After(20 * time.Second):
		}
	}()
	// 150 non-blocking connects: 65 fill the queue, the rest are dropped.
	var fds []int
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	err := netns.Do(sb.NetNS, func() error {
		for range 150 {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			err = unix.Connect(fd, &unix.SockaddrInet4{Port: sb.Port, Addr: [4]byte{127, 0, 0, 1}})
			if err != nil && err != unix.EINPROGRESS {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-woke:
		// Reported, not asserted: timing on a loaded machine.
		t.Logf("first SYN at a full queue -> wake-up in user space: %v", d)
	case <-time.After(20 * time.Second):
		t.Fatal("no wake-up from the overflow")
	}
	// Stop the storm: no more SYN retransmissions, then compare once
	// both counters have settled.
	for _, fd := range fds {
		unix.Close(fd)
	}
	fds = nil
	if err := sb.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var port, ns uint64
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := collectEBPF(t, e)
		n := *collectTCP(t, tcp).ListenOverflows - ns0
		p := *s.PortOverflows - *s0.PortOverflows
		if p == port && n == ns && p > 0 {
			break
		}
		port, ns = p, n
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("overflows: listener %d, namespace %d", port, ns)
	if port == 0 || port != ns {
		t.Fatalf("listen.overflows_port rose by %d, namespace ListenOverflows by %d: want equal and > 0", port, ns)
	}
}

// TestIntegrationEBPFFallback samples a real Valkey with every source, eBPF
// turned off by the environment: errors.ebpf says so, the eBPF keys are
// null, and the accept queue and the SYN_RECV/ESTABLISHED counts still come
// from sock_diag. It runs in both of make test's passes (it sets the
// environment itself); with eBPF allowed it also checks that the same
// sample has no errors.ebpf and carries the eBPF keys.
func TestIntegrationEBPFFallback(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	allowed := !listentrace.Off() && listentrace.Supported
	sampleWith := func(t *testing.T) *sample.Sample {
		t.Helper()
		set := Open(context.Background(), Options{Target: Target{Addr: a, NetNS: sb.NetNS}})
		defer set.Close()
		sm := &sample.Sampler{Target: sb.Addr(), Port: a.Port, NetNS: sb.NetNS, Sources: set.Sources, Interval: time.Second}
		return sm.Once(context.Background())
	}
	t.Run("off", func(t *testing.T) {
		t.Setenv(listentrace.Env, "0")
		s := sampleWith(t)
		if why := s.Errors["ebpf"]; !strings.Contains(why, "turned off") {
			t.Fatalf("errors.ebpf = %q, want the reason it is off (errors: %v)", why, s.Errors)
		}
		if s.AcceptWaitMS != nil || s.SynRate != nil || s.PortOverflows != nil {
			t.Errorf("eBPF keys filled while off: accept_wait %+v syn_rate %v overflows_port %v", s.AcceptWaitMS, s.SynRate, s.PortOverflows)
		}
		if s.Listen == nil || s.Listen.Depth == nil || s.Established == nil || s.SynRecv == nil {
			t.Fatalf("sock_diag fallback missing: listen %+v established %v syn_recv %v (errors: %v)", s.Listen, s.Established, s.SynRecv, s.Errors)
		}
		for _, name := range []string{"listenq", "valkey", "tcp"} {
			if why, ok := s.Errors[name]; ok {
				t.Errorf("errors.%s = %q with eBPF off, want none", name, why)
			}
		}
	})
	t.Run("on", func(t *testing.T) {
		if !allowed {
			t.Skipf("%s turns eBPF off: the fallback pass", listentrace.Env)
		}
		s := sampleWith(t)
		if why, ok := s.Errors["ebpf"]; ok {
			t.Fatalf("errors.ebpf = %q with eBPF on", why)
		}
		if s.AcceptWaitMS == nil || s.SynRate == nil {
			t.Errorf("eBPF keys missing: accept_wait %+v syn_rate %v", s.AcceptWaitMS, s.SynRate)
		}
	})
}

// TestIntegrationEBPFCounts checks the SYN_RECV/ESTABLISHED counts the
// programs keep against a sock_diag walk of the namespace: connections made
// before the programs were attached (counted by the iterator's one walk),
// connections made and closed after (counted by the state-change
// tracepoint), and the accept-queue source taking them with no walk.
func TestIntegrationEBPFCounts(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	dial := func(n int) []net.Conn { return dialN(t, sb, n) }
	agree := func(what string, e *ebpfSource) { agreeCounts(t, sb, e, what) }
	before := dial(40)
	// Connections come and go while the programs attach and walk: the
	// count must still come out exact.
	stop := make(chan struct{})
	churned := make(chan int)
	go func() {
		n := 0
		defer func() { churned <- n }()
		for range 5000 {
			select {
			case <-stop:
				return
			default:
			}
			c, err := sb.Dial(context.Background())
			if err != nil {
				return
			}
			c.Close()
			n++
		}
	}()
	e := openEBPFTest(t, sb)
	close(stop)
	t.Logf("%d connections made and closed while attaching", <-churned)
	agree("40 made before attach", e)
	after := dial(25)
	agree("+25 after", e)
	for _, c := range before[:30] {
		c.Close()
	}
	for _, c := range after[:5] {
		c.Close()
	}
	agree("30 of the first and 5 of the later closed", e)

	// The accept-queue source takes the kernel's counts: no walk.
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	set := Open(context.Background(), Options{Target: Target{Addr: a, NetNS: sb.NetNS}, ListenPoll: -1})
	defer set.Close()
	sm := &sample.Sampler{Target: sb.Addr(), Port: a.Port, NetNS: sb.NetNS, Sources: set.Sources, Interval: time.Second}
	s := sm.Once(context.Background())
	var lq *listenq
	for _, src := range set.Sources {
		if v, ok := src.(*listenq); ok {
			lq = v
		}
	}
	if lq == nil || lq.kernelCounts == nil {
		t.Fatalf("accept-queue source does not use the kernel counts (errors: %v)", s.Errors)
	}
	lq.cmu.Lock()
	walks := lq.counts
	lq.cmu.Unlock()
	if walks != 0 {
		t.Errorf("accept-queue source walked the hash %d times with eBPF on", walks)
	}
	// 30 left open here, plus the sampler's own Valkey connection.
	if s.Established == nil || *s.Established < 30 || s.CountsAgeMS == nil || *s.CountsAgeMS != 0 {
		t.Errorf("sample: established %v counts_age_ms %v, want >= 30 and 0 (errors: %v)", s.Established, s.CountsAgeMS, s.Errors)
	}
}

// dialN opens n connections to the sandbox's Valkey, closed at cleanup.
func dialN(t *testing.T, sb *sandbox.Sandbox, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for range n {
		c, err := sb.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return cs
}

// walkCounts counts the port's ESTABLISHED and SYN_RECV sockets with a
// sock_diag walk of the sandbox's namespace (the reference).
func walkCounts(t *testing.T, sb *sandbox.Sandbox) (est, synRecv uint64) {
	t.Helper()
	c, err := dialDiag(sb.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	tl := diagTally{Port: uint16(sb.Port)}
	if err := c.dump(statesSynRecv|statesEstablished, &tl, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	return uint64(tl.States[tcpEstablished]), uint64(tl.States[tcpSynRecv] + tl.States[tcpNewSynRecv])
}

// agreeCounts waits until the programs' counts equal a sock_diag walk's
// (the kernel settles a close when Valkey reads the FIN: compare until
// they agree, bounded) and fails if they never do.
func agreeCounts(t *testing.T, sb *sandbox.Sandbox, e *ebpfSource, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		est, sr, err := e.kernelCounts()
		west, wsr := walkCounts(t, sb)
		if err == nil && est == west && sr == wsr {
			t.Logf("%s: established %d, syn_recv %d (kernel = walk)", what, est, sr)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: kernel established %d syn_recv %d (err %v), walk %d and %d", what, est, sr, err, west, wsr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIntegrationEBPFCountsAcrossRestart: Valkey killed and started again
// under the programs. While it is down no listener is known (Counts says
// so, and the accept-queue source walks the hash instead); once it is back
// the iterator walks again and learns both new listening sockets, and the
// ESTABLISHED count — kept from state changes the whole time — still
// equals a sock_diag walk: the killed server's sockets were uncounted,
// connections made right after the restart (possibly before the new
// walk) are counted, and so are later opens and closes.
func TestIntegrationEBPFCountsAcrossRestart(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	held := dialN(t, sb, 20)
	e := openEBPFTest(t, sb)
	agreeCounts(t, sb, e, "20 before the restart")

	if err := sb.StopValkey(); err != nil {
		t.Fatal(err)
	}
	for _, c := range held {
		c.Close() // the server is gone: nothing to keep open
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := e.kernelCounts()
		west, _ := walkCounts(t, sb)
		if errors.Is(err, listentrace.ErrNoListener) && west == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Valkey down: Counts err %v with %d established in the walk; want ErrNoListener and 0", err, west)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := sb.StartValkey(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Right away, before the programs can have learned the new
	// listener: these are counted by the state changes alone.
	early := dialN(t, sb, 12)
	agreeCounts(t, sb, e, "12 right after the restart")
	later := dialN(t, sb, 30)
	agreeCounts(t, sb, e, "+30 later")
	for _, c := range append(early[:6], later[:10]...) {
		c.Close()
	}
	agreeCounts(t, sb, e, "16 of them closed")
	// Both new listening sockets (127.0.0.1 and ::1) are known, whether
	// or not one of them reused an old one's address (then the other's
	// dead entry, pruned, asks for the walk).
	deadline = time.Now().Add(10 * time.Second)
	for {
		c, err := e.tr.Read()
		if err != nil {
			t.Fatal(err)
		}
		if c.Listeners == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d listeners known after the restart, want 2 (IPv4 and IPv6)", c.Listeners)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
