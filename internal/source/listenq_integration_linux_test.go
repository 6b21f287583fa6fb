//go:build linux

package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// burstDial opens n non-blocking TCP connects to dst from inside the
// namespace, spread over threads goroutines so SYNs race each other like a
// real storm. The sockets stay bound to the namespace; the returned close
// function releases them. Connects that the kernel drops just keep
// retransmitting SYNs until closed, which is what a storm looks like.
func burstDial(t testing.TB, nsPath string, dst netip.AddrPort, n, threads int) (closeAll func()) {
	t.Helper()
	var mu sync.Mutex
	var fds []int
	var wg sync.WaitGroup
	errc := make(chan error, threads)
	for w := 0; w < threads; w++ {
		cnt := n / threads
		if w < n%threads {
			cnt++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- netns.Do(nsPath, func() error {
				for i := 0; i < cnt; i++ {
					fd, err := dialNonblock(dst)
					if err != nil {
						return err
					}
					mu.Lock()
					fds = append(fds, fd)
					mu.Unlock()
				}
				return nil
			})
		}()
	}
	wg.Wait()
	close(errc)
	closeAll = func() {
		mu.Lock()
		defer mu.Unlock()
		for _, fd := range fds {
			// Abort (RST), not close (FIN): an orphaned socket would keep
			// retransmitting its FIN for minutes, and with SYN cookies on
			// such a FIN can validate as a cookie at the listener and put
			// a fresh child in the accept queue after the test drained it.
			_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			unix.Close(fd)
		}
		fds = nil
	}
	for err := range errc {
		if err != nil {
			closeAll()
			t.Fatalf("burst dial: %v", err)
		}
	}
	return closeAll
}

func dialNonblock(dst netip.AddrPort) (int, error) {
	fam := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	if dst.Addr().Is4() {
		fam = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", dst, err)
	}
	return fd, nil
}

// ssListen runs `ss -Hltn sport = :PORT` in the namespace and returns the
// Recv-Q and Send-Q of each listening socket, keyed by local address.
func ssListen(t testing.TB, sb *sandbox.Sandbox) map[string][2]uint64 {
	t.Helper()
	out, err := sb.Command(context.Background(), "ss", "-Hltn", "sport", "=", ":"+strconv.Itoa(sb.Port)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss in namespace: %v: %s", err, out)
	}
	m := map[string][2]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		rq, err1 := strconv.ParseUint(f[1], 10, 64)
		sq, err2 := strconv.ParseUint(f[2], 10, 64)
		if f[0] != "LISTEN" || err1 != nil || err2 != nil {
			t.Fatalf("unexpected ss line %q", line)
		}
		m[f[3]] = [2]uint64{rq, sq}
	}
	return m
}

func openTestListenq(t testing.TB, sb *sandbox.Sandbox, poll time.Duration) *listenq {
	t.Helper()
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	src, err := openListenq(context.Background(), Options{Target: Target{Addr: a, NetNS: sb.NetNS}, ListenPoll: poll})
	if err != nil {
		t.Fatalf("open listenq: %v", err)
	}
	l := src.(*listenq)
	l.budget = 0 // count at every sample: the tests compare with ss at once
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close listenq: %v", err)
		}
	})
	return l
}

func collectListenq(t testing.TB, l *listenq) (*sample.Sample, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := &sample.Sample{}
	err := l.Collect(ctx, s)
	return s, err
}

func u(p *uint64) string {
	if p == nil {
		return "nil"
	}
	return strconv.FormatUint(*p, 10)
}

// nftDropFinalACKs makes the namespace drop pure ACKs to the port, so
// handshakes stop after the SYN-ACK and request sockets pile up in SYN_RECV
// (what a lossy network does to a storm). It returns the undo.
func nftDropFinalACKs(t testing.TB, sb *sandbox.Sandbox) (undo func()) {
	t.Helper()
	rules := fmt.Sprintf("table inet sglistenqtest {\n chain in {\n  type filter hook input priority 0; policy accept;\n  tcp dport %d tcp flags & (syn|ack|fin|rst) == ack drop\n }\n}\n", sb.Port)
	cmd := sb.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in namespace: %v: %s", err, out)
	}
	return func() {
		if out, err := sb.Command(context.Background(), "nft", "delete", "table", "inet", "sglistenqtest").CombinedOutput(); err != nil {
			t.Fatalf("nft delete: %v: %s", err, out)
		}
	}
}

// ssSynRecv counts request sockets for the port as ss sees them.
func ssSynRecv(t testing.TB, sb *sandbox.Sandbox) uint64 {
	t.Helper()
	out, err := sb.Command(context.Background(), "ss", "-Htan", "state", "syn-recv", "sport", "=", ":"+strconv.Itoa(sb.Port)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss in namespace: %v: %s", err, out)
	}
	var n uint64
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n
}

// waitSample collects every 100ms until ok holds or 20s pass.
func waitSample(t testing.TB, l *listenq, what string, ok func(*sample.Sample) bool) *sample.Sample {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := collectListenq(t, l)
		if err == nil && ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: last sample err=%v %s", what, err, describe(s))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func describe(s *sample.Sample) string {
	if s.Listen == nil {
		return fmt.Sprintf("listen=nil syn_recv=%s established=%s", u(s.SynRecv), u(s.Established))
	}
	return fmt.Sprintf("depth=%s depth_max=%s limit=%s depth_total=%s limit_total=%s sockets=%d polls=%d syn_recv=%s established=%s",
		u(s.Listen.Depth), u(s.Listen.DepthMax), u(s.Listen.Limit), u(s.Listen.DepthTotal), u(s.Listen.LimitTotal),
		s.Listen.Sockets, s.Listen.Polls, u(s.SynRecv), u(s.Established))
}

// agreeWithSS checks a fresh sample against ss run in the same namespace.
// The queues are frozen when this is called, so both must read the same
// numbers; a few retries absorb a connection still completing.
func agreeWithSS(t testing.TB, sb *sandbox.Sandbox, l *listenq) {
	t.Helper()
	var last string
	for try := 0; try < 20; try++ {
		s, err := collectListenq(t, l)
		ss := ssListen(t, sb)
		var maxQ, sumQ, sumLimit uint64
		for _, q := range ss {
			maxQ = max(maxQ, q[0])
			sumQ += q[0]
			sumLimit += q[1]
		}
		last = fmt.Sprintf("err=%v sample: %s", err, describe(s))
		if s.Listen != nil && s.Listen.Depth != nil && s.Listen.Sockets == len(ss) &&
			*s.Listen.Depth == maxQ && *s.Listen.DepthTotal == sumQ && *s.Listen.LimitTotal == sumLimit {
			return
		}
		last = fmt.Sprintf("%s; ss: %v", last, ss)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("listen queue disagrees with ss -Hltn: %s", last)
}

func TestIntegrationListenQueue(t *testing.T) {
	cases := []struct {
		name    string
		sysctls map[string]string
		args    []string
		limit   uint64
	}{
		// Valkey's default tcp-backlog 511, truncated by somaxconn.
		{"somaxconn below tcp-backlog", map[string]string{"net.core.somaxconn": "64"}, nil, 64},
		{"tcp-backlog below somaxconn", map[string]string{"net.core.somaxconn": "256"}, []string{"--tcp-backlog", "32"}, 32},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sb := sandboxtest.New(t, sandbox.Options{Sysctls: tc.sysctls, ValkeyArgs: tc.args})
			l := openTestListenq(t, sb, 0)

			// Calm: both listeners (127.0.0.1 and ::1) found, empty queues.
			s, err := collectListenq(t, l)
			if err != nil {
				t.Fatalf("calm collect: %v", err)
			}
			if s.Listen == nil || s.Listen.Sockets != 2 || s.Listen.Depth == nil || *s.Listen.Depth != 0 ||
				*s.Listen.Limit != tc.limit || *s.Listen.LimitTotal != 2*tc.limit || *s.SynRecv != 0 {
				t.Fatalf("calm sample: %s; want 2 sockets (IPv4+IPv6), depth 0, limit %d", describe(s), tc.limit)
			}
			agreeWithSS(t, sb, l)

			thaw := sandboxtest.Freeze(t, sb)

			// Phase 1: final ACKs lost, so the storm's handshakes sit in
			// SYN_RECV; with SYN cookies on (the default) request sockets
			// plateau near the listen backlog.
			undo := nftDropFinalACKs(t, sb)
			closeV4 := burstDial(t, sb.NetNS, netip.MustParseAddrPort(sb.Addr()), 300, 4)
			t.Cleanup(closeV4)
			s = waitSample(t, l, "SYN_RECV > 0", func(s *sample.Sample) bool { return *s.SynRecv > 0 })
			var agreed bool
			for try := 0; try < 20 && !agreed; try++ {
				s, _ = collectListenq(t, l)
				want := ssSynRecv(t, sb)
				agreed = s.SynRecv != nil && *s.SynRecv == want
				if !agreed {
					t.Logf("syn_recv %s vs ss %d; retrying", u(s.SynRecv), want)
					time.Sleep(100 * time.Millisecond)
				}
			}
			if !agreed {
				t.Fatalf("syn_recv never agreed with ss state syn-recv: %s", describe(s))
			}
			// The kernel checks the queue length without a lock, so SYNs
			// racing on different CPUs may each add one past the limit;
			// allow a few, but 300 would mean cookies never kicked in.
			if *s.SynRecv > tc.limit+8 {
				t.Errorf("syn_recv %d far above the listen backlog %d with SYN cookies on", *s.SynRecv, tc.limit)
			}

			// Phase 2: ACKs flow again (the SYN-ACK retransmit completes
			// the handshakes) and a second wave hits the IPv6 listener:
			// both accept queues fill to their limit.
			undo()
			closeV6 := burstDial(t, sb.NetNS, netip.AddrPortFrom(netip.IPv6Loopback(), uint16(sb.Port)), 300, 4)
			t.Cleanup(closeV6)
			s = waitSample(t, l, "both accept queues full", func(s *sample.Sample) bool {
				return s.Listen.DepthTotal != nil && *s.Listen.DepthTotal >= 2*tc.limit
			})
			if *s.Listen.Depth < tc.limit || *s.Listen.DepthMax < *s.Listen.Depth || *s.Listen.Limit != tc.limit {
				t.Fatalf("saturated sample: %s; want depth and depth_max >= limit %d", describe(s), tc.limit)
			}
			agreeWithSS(t, sb, l)
			s, _ = collectListenq(t, l)
			if *s.Established != *s.Listen.DepthTotal {
				t.Errorf("established %d, want the %d connections waiting in the accept queues", *s.Established, *s.Listen.DepthTotal)
			}
			// The 100 Hz poller runs between samples (waitSample leaves
			// 100ms between them).
			waitSample(t, l, "polls between samples", func(s *sample.Sample) bool { return s.Listen.Polls >= 2 })
			// Most polls are direct lookups of the known listeners, not dumps.
			if lk, dp := l.lookups.Load(), l.dumps.Load(); lk <= dp {
				t.Errorf("poller made %d lookups and %d dumps; want mostly lookups", lk, dp)
			}

			// The peak survives the drain: the poller sees the full queues
			// after this sample, Valkey then drains them, and the next
			// sample still reports the peak. The dialers go first so no
			// SYN retransmit refills the queue after the thaw.
			collectListenq(t, l)
			closeV4()
			closeV6()
			waitPolls(t, l, 5) // polls of the full queues, before the thaw
			thaw()
			deadline := time.Now().Add(20 * time.Second)
			for {
				var sum uint64
				for _, q := range ssListen(t, sb) {
					sum += q[0]
				}
				// Drained means nothing queued and no half-open request
				// left whose SYN-ACK retransmit could still complete a
				// handshake and queue a child after this point.
				if sum == 0 && ssSynRecv(t, sb) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("valkey did not drain its accept queues after the thaw: %v", ssListen(t, sb))
				}
				time.Sleep(50 * time.Millisecond)
			}
			s, err = collectListenq(t, l)
			if err != nil || *s.Listen.Depth != 0 || *s.Listen.DepthMax < tc.limit {
				t.Fatalf("after drain: err=%v %s; want depth 0 and the interval's peak depth_max >= %d", err, describe(s), tc.limit)
			}
			s, err = collectListenq(t, l)
			if err != nil || *s.Listen.DepthMax != 0 {
				t.Fatalf("next interval: err=%v %s; want the peak reset to 0", err, describe(s))
			}
		})
	}
}

func TestIntegrationListenQueueNoListener(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	a, err := addr.Parse("127.0.0.1:6390") // nothing listens here
	if err != nil {
		t.Fatal(err)
	}
	src, err := openListenq(context.Background(), Options{Target: Target{Addr: a, NetNS: sb.NetNS}})
	if err != nil {
		t.Fatal(err)
	}
	defer src.(*listenq).Close()
	s := &sample.Sample{}
	err = src.Collect(context.Background(), s)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no listening socket on port 6390") {
		t.Fatalf("err = %v; want unavailable: no listening socket on port 6390", err)
	}
	if s.Listen == nil || s.Listen.Sockets != 0 || s.Listen.Depth != nil || s.Listen.Limit != nil || s.Listen.DepthMax != nil {
		t.Fatalf("listen = %+v; want Sockets 0 and nil depth, depth_max and limit", s.Listen)
	}
	if s.SynRecv == nil || *s.SynRecv != 0 || s.Established == nil || *s.Established != 0 {
		t.Fatalf("syn_recv=%s established=%s; want both counted as 0", u(s.SynRecv), u(s.Established))
	}
}

func TestIntegrationListenQueueNamespaceGone(t *testing.T) {
	sandboxtest.Require(t)
	a, _ := addr.Parse("127.0.0.1:6379")
	src, err := openListenq(context.Background(), Options{Target: Target{Addr: a, NetNS: "/var/run/netns/sg-does-not-exist"}})
	if err != nil {
		t.Fatal(err)
	}
	defer src.(*listenq).Close()
	s := &sample.Sample{}
	err = src.Collect(context.Background(), s)
	if !errors.Is(err, ErrUnavailable) || s.Listen != nil {
		t.Fatalf("err = %v, listen = %+v; want unavailable and no listen part", err, s.Listen)
	}
}

// TestIntegrationListenQueueReusePort: two SO_REUSEPORT listeners share the
// port, each with its own queue. Both are counted, and the poller, which
// cannot tell them apart by address, keeps dumping instead of looking up.
func TestIntegrationListenQueueReusePort(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{NoValkey: true})
	const addrPort = "127.0.0.1:7000"
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
			return err
		}
		return serr
	}}
	err := netns.Do(sb.NetNS, func() error {
		for i := 0; i < 2; i++ {
			ln, err := lc.Listen(context.Background(), "tcp4", addrPort)
			if err != nil {
				return err
			}
			t.Cleanup(func() { ln.Close() })
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reuseport listeners: %v", err)
	}
	a, _ := addr.Parse(addrPort)
	src, err := openListenq(context.Background(), Options{Target: Target{Addr: a, NetNS: sb.NetNS}})
	if err != nil {
		t.Fatal(err)
	}
	l := src.(*listenq)
	l.budget = 0
	defer l.Close()
	closeAll := burstDial(t, sb.NetNS, netip.MustParseAddrPort(addrPort), 20, 2)
	defer closeAll()
	s := waitSample(t, l, "20 queued connections", func(s *sample.Sample) bool {
		return s.Listen.DepthTotal != nil && *s.Listen.DepthTotal == 20
	})
	if s.Listen.Sockets != 2 || *s.Established != 20 || *s.Listen.Depth > 20 || *s.Listen.Depth < 10 {
		t.Fatalf("sample %s; want 2 sockets, 20 established, fullest queue holding 10..20", describe(s))
	}
	waitPolls(t, l, 5)
	if lk, dp := l.lookups.Load(), l.dumps.Load(); lk != 0 || dp == 0 {
		t.Fatalf("poller made %d lookups and %d dumps; want dumps only for a reuseport group", lk, dp)
	}
}

// TestIntegrationListenQueuePollAllocs guards the fast poller's promise: at
// 100 Hz it must not feed the garbage collector, so neither a direct lookup
// nor a relearning dump may allocate.
func TestIntegrationListenQueuePollAllocs(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	l := openTestListenq(t, sb, -1)
	c, err := l.collConn()
	if err != nil {
		t.Fatal(err)
	}
	tally := diagTally{Port: l.port, KeepIDs: true}
	if err := c.dump(statesListen, &tally, time.Time{}); err != nil || len(tally.IDs) != 2 {
		t.Fatalf("learn listeners: %v, %d ids", err, len(tally.IDs))
	}
	ids := tally.IDs
	lookup := testing.AllocsPerRun(100, func() {
		tally = diagTally{Port: l.port}
		if err := c.exact(ids, &tally); err != nil || tally.Sockets != 2 {
			t.Fatalf("lookup: %v, %d sockets", err, tally.Sockets)
		}
	})
	dump := testing.AllocsPerRun(100, func() {
		tally = diagTally{Port: l.port, KeepIDs: true, IDs: ids[:0]}
		if err := c.dump(statesListen, &tally, time.Time{}); err != nil || tally.Sockets != 2 {
			t.Fatalf("dump: %v, %d sockets", err, tally.Sockets)
		}
		ids = tally.IDs
	})
	if lookup != 0 || dump != 0 {
		t.Fatalf("allocations per poll: lookup %v, dump %v; want 0", lookup, dump)
	}
}

// TestIntegrationListenQueueRestart opens the source through the sources
// table, restarts Valkey under it (new listening sockets, new cookies), and
// checks the poller follows without failed polls and Close stops it.
func TestIntegrationListenQueueRestart(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{"net.core.somaxconn": "64"}})
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	set := Open(context.Background(), Options{Target: Target{Addr: a, NetNS: sb.NetNS}})
	var l *listenq
	for _, src := range set.Sources {
		if src.Name() == "listenq" {
			l, _ = src.(*listenq)
		}
	}
	if l == nil {
		t.Fatalf("sources table has no working listenq source: %v", set.Sources)
	}
	s := waitSample(t, l, "listener", func(s *sample.Sample) bool { return s.Listen.Sockets == 2 })
	lookupsBefore := l.lookups.Load()

	if err := sb.StopValkey(); err != nil {
		t.Fatal(err)
	}
	s, err = collectListenq(t, l)
	if err == nil || !strings.Contains(err.Error(), "no listening socket") || s.Listen.Sockets != 0 {
		t.Fatalf("with Valkey stopped: err=%v %s; want no listening socket", err, describe(s))
	}
	if err := sb.StartValkey(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = waitSample(t, l, "listener back", func(s *sample.Sample) bool { return s.Listen.Sockets == 2 && *s.Listen.Limit == 64 })
	deadline := time.Now().Add(10 * time.Second)
	for l.lookups.Load() < lookupsBefore+20 {
		if time.Now().After(deadline) {
			t.Fatalf("poller did not go back to direct lookups after the restart (%d lookups, %d dumps)", l.lookups.Load(), l.dumps.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := l.failures.Load(); n != 0 {
		t.Errorf("%d polls failed across the restart", n)
	}
	if err := set.Close(); err != nil {
		t.Fatalf("close sources: %v", err)
	}
	select {
	case <-l.done:
	default:
		t.Fatal("poller still running after Close")
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// dialHold opens n TCP connections to dst from inside the namespace and
// closes them at cleanup.
func dialHold(t testing.TB, nsPath, dst string, n int) {
	t.Helper()
	err := netns.Do(nsPath, func() error {
		for i := 0; i < n; i++ {
			c, err := net.DialTimeout("tcp", dst, 5*time.Second)
			if err != nil {
				return err
			}
			t.Cleanup(func() { c.Close() })
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dial %s: %v", dst, err)
	}
}

// TestIntegrationListenQueueCompatDump checks that the one-walk
// TCPDIAG_GETSOCK dump sees exactly what the two SOCK_DIAG_BY_FAMILY dumps
// see, for listeners and for established connections of both families.
func TestIntegrationListenQueueCompatDump(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	dialHold(t, sb.NetNS, sb.Addr(), 5)
	dialHold(t, sb.NetNS, net.JoinHostPort("::1", strconv.Itoa(sb.Port)), 3)
	l := openTestListenq(t, sb, -1)
	c, err := l.collConn()
	if err != nil {
		t.Fatal(err)
	}
	for _, states := range []uint32{statesListen, statesSynRecv | statesEstablished} {
		c.compat = true
		one := diagTally{Port: l.port}
		if err := c.dump(states, &one, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("states %#x, one walk: %v", states, err)
		}
		if !c.compat {
			t.Logf("kernel refused TCPDIAG_GETSOCK; both sides used per-family dumps")
		}
		c.compat = false
		two := diagTally{Port: l.port}
		if err := c.dump(states, &two, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("states %#x, per family: %v", states, err)
		}
		if one.Sockets != two.Sockets || one.States != two.States || one.DepthSum != two.DepthSum || one.LimitSum != two.LimitSum {
			t.Fatalf("states %#x: one walk %+v, per family %+v", states, one, two)
		}
		if states == statesListen && one.Sockets != 2 || states != statesListen && one.States[tcpEstablished] != 8 {
			t.Fatalf("states %#x: %+v; want 2 listeners or 8 established (5 IPv4 + 3 IPv6)", states, one)
		}
	}
}

// TestIntegrationListenQueueCountBudget checks the counting budget against
// the kernel: while the last count is fresh enough, samples repeat it (even
// though new connections arrived), and once it is due they count again.
func TestIntegrationListenQueueCountBudget(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	l := openTestListenq(t, sb, -1)
	l.budget = 1e-9 // any count is over budget: spaced by countMaxAge

	s, err := collectListenq(t, l)
	if err != nil || l.counts != 1 {
		t.Fatalf("first sample: err=%v, %d counts; want one count", err, l.counts)
	}
	before := *s.Established
	if l.nextCount.Sub(time.Now()) < countMaxAge-5*time.Second {
		t.Fatalf("next count in %v; want about countMaxAge (%v)", time.Until(l.nextCount), countMaxAge)
	}

	dialHold(t, sb.NetNS, sb.Addr(), 4)
	s, err = collectListenq(t, l)
	if err != nil || l.counts != 1 || *s.Established != before {
		t.Fatalf("second sample: err=%v, %d counts, established %s; want the first count (%d) repeated", err, l.counts, u(s.Established), before)
	}

	l.mu.Lock()
	l.nextCount = time.Time{} // due now
	l.mu.Unlock()
	s, err = collectListenq(t, l)
	if err != nil || l.counts != 2 || *s.Established != before+4 {
		t.Fatalf("third sample: err=%v, %d counts, established %s; want a new count of %d", err, l.counts, u(s.Established), before+4)
	}
}

// waitPolls waits until the fast poller has made n more polls (lookups,
// dumps or failures) than when it was called: tests wait for polls to
// happen rather than for time to pass, so a loaded machine only makes them
// slower.
func waitPolls(t *testing.T, l *listenq, n uint64) {
	t.Helper()
	polls := func() uint64 { return l.lookups.Load() + l.dumps.Load() + l.failures.Load() }
	want := polls() + n
	deadline := time.Now().Add(20 * time.Second)
	for polls() < want {
		if time.Now().After(deadline) {
			t.Fatalf("the poller made %d of %d polls within 20s", n-(want-polls()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestListenqCloseLogsNoError: closing the source while its poller waits on
// the clock (what every SIGTERM of watch does) is a shutdown, not an error.
// It runs in the test's own namespace on a loopback listener.
func TestListenqCloseLogsNoError(t *testing.T) {
	a := loopbackListener(t)
	var logs sandboxtest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for i := 0; i < 10; i++ {
		src, err := openListenq(context.Background(), Options{Target: Target{Addr: a}, Logger: log})
		if err != nil {
			sandboxtest.SkipOrFail(t, "sock_diag unavailable here: "+err.Error())
		}
		l := src.(*listenq)
		waitPolls(t, l, 2)
		if err := l.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("closing the source logged an error:\n%s", logs.String())
	}
}

// TestIntegrationListenQueueShortInterval: at a 10 ms interval with 3,000
// connections on the port, every sample has the accept queue (listen.depth)
// and no listenq error: the SYN_RECV/ESTABLISHED count runs in the
// background, never inside a sample's 8 ms deadline, one at a time.
func TestIntegrationListenQueueShortInterval(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{
		Sysctls:    map[string]string{"net.core.somaxconn": "4096"},
		ValkeyArgs: []string{"--maxclients", "4000", "--tcp-backlog", "4096"},
	})
	const conns = 3000
	sandboxtest.HoldConns(t, sb, conns, "TestListenqConnHolder")
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	src, err := openListenq(context.Background(), Options{Target: Target{Addr: a, NetNS: sb.NetNS}})
	if err != nil {
		t.Fatal(err)
	}
	l := src.(*listenq)
	defer l.Close()
	sm := &sample.Sampler{Target: sb.Addr(), Port: sb.Port, Interval: 10 * time.Millisecond, Sources: []sample.Source{l}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ss []*sample.Sample
	sm.Run(ctx, func(s *sample.Sample) {
		if ss = append(ss, s); len(ss) == 50 {
			cancel()
		}
	})
	if len(ss) < 50 {
		t.Fatalf("%d samples within 30s, want 50", len(ss))
	}
	counted := 0
	for i, s := range ss {
		if s.Listen == nil || s.Listen.Depth == nil || s.Errors["listenq"] != "" {
			t.Errorf("sample %d: listen %+v, errors %v; want listen.depth and no listenq error", i, s.Listen, s.Errors)
		}
		if s.Established != nil {
			counted++
		}
	}
	// Counts end, in the background, and later samples carry them.
	if last := ss[len(ss)-1]; last.Established == nil || *last.Established < conns {
		t.Errorf("last sample: established %s; want the background count (>= %d)", u(last.Established), conns)
	}
	l.cmu.Lock()
	counts := l.counts
	l.cmu.Unlock()
	t.Logf("50 samples at 10ms: %d with counts, %d counts run", counted, counts)
}
