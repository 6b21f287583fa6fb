//go:build linux

package signal

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// The benchmarks here need root and valkey-server (they build a sandbox);
// bench/listenq.sh runs them and docs/benchmarks.md records the results.
//
// Everything is measured in CPU time (getrusage: user+system), not wall
// time, so a loaded machine changes the numbers little; kernel time spent
// producing the sock_diag dumps is charged to the process that reads them,
// so it is included.

// cpuTime returns the CPU time used by who (RUSAGE_SELF or RUSAGE_CHILDREN).
func cpuTime(tb testing.TB, who int) time.Duration {
	tb.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchSandbox makes a sandbox whose Valkey accepts n+1000 clients, and
// holds n established connections to it from inside the namespace. The
// process's fd limit is raised first (root may raise the hard limit), and
// valkey-server inherits it through ip netns exec.
func benchSandbox(b *testing.B, n int) (*sandbox.Sandbox, []net.Conn) {
	b.Helper()
	sandboxtest.Require(b)
	need := uint64(n + 2000)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur < 2*need {
		lim = unix.Rlimit{Cur: 2 * need, Max: max(lim.Max, 2*need)}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			b.Fatalf("raise fd limit to %d for %d connections: %v", 2*need, n, err)
		}
	}
	sb := sandboxtest.New(b, sandbox.Options{
		Sysctls:    map[string]string{"net.core.somaxconn": "4096"},
		ValkeyArgs: []string{"--maxclients", strconv.Itoa(n + 1000), "--tcp-backlog", "4096"},
	})
	conns := make([]net.Conn, 0, n)
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	err := netns.Do(sb.NetNS, func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		for len(conns) < n {
			c, err := d.Dial("tcp", sb.Addr())
			if err != nil {
				return fmt.Errorf("connection %d of %d: %w", len(conns)+1, n, err)
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		b.Fatalf("holding %d connections: %v", n, err)
	}
	return sb, conns
}

func benchListenq(b *testing.B, sb *sandbox.Sandbox, poll time.Duration) *listenq {
	b.Helper()
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		b.Fatal(err)
	}
	src, err := openListenq(context.Background(), Options{Target: Target{Addr: a, NetNS: sb.NetNS}, ListenPoll: poll})
	if err != nil {
		b.Fatal(err)
	}
	l := src.(*listenq)
	b.Cleanup(func() { l.Close() })
	return l
}

// talkCommands runs the talk's two commands once inside the namespace,
// without a shell: `ss -Hln sport = :PORT` and `ss -anH state syn-recv | wc -l`.
// The children fork from a thread inside the namespace, so they see it.
func talkCommands(sb *sandbox.Sandbox) (listenLines int, err error) {
	err = netns.Do(sb.NetNS, func() error {
		out, err := exec.Command("ss", "-Hln", "sport", "=", ":"+strconv.Itoa(sb.Port)).Output()
		if err != nil {
			return fmt.Errorf("ss -Hln: %w", err)
		}
		listenLines = strings.Count(string(out), "\n")
		ss := exec.Command("ss", "-anH", "state", "syn-recv")
		wc := exec.Command("wc", "-l")
		pipe, err := ss.StdoutPipe()
		if err != nil {
			return err
		}
		wc.Stdin = pipe
		wc.Stdout = io.Discard
		if err := wc.Start(); err != nil {
			return fmt.Errorf("wc: %w", err)
		}
		if err := ss.Run(); err != nil {
			return fmt.Errorf("ss state syn-recv: %w", err)
		}
		return wc.Wait()
	})
	return listenLines, err
}

// benchCollectVsTalk measures one full Collect (LISTEN dump, SYN_RECV and
// ESTABLISHED counts, both families) against one run of the talk's two
// commands, alternating rounds so both see the same machine state.
func benchCollectVsTalk(b *testing.B, n int) {
	sb, _ := benchSandbox(b, n)
	l := benchListenq(b, sb, -1) // poller off: measure Collect alone
	ctx := context.Background()
	s := &sample.Sample{}
	if err := l.Collect(ctx, s); err != nil {
		b.Fatal(err)
	}
	if *s.Established < uint64(n) || s.Listen.Sockets != 2 {
		b.Fatalf("setup: established %d (want >= %d), sockets %d", *s.Established, n, s.Listen.Sockets)
	}
	if lines, err := talkCommands(sb); err != nil || lines != 2 {
		b.Fatalf("talk commands: %v, %d listen lines (want 2: IPv4 and IPv6)", err, lines)
	}
	const rounds = 20
	var collectCPU, talkCPU, talkParentCPU time.Duration
	b.ResetTimer()
	for b.Loop() {
		for r := 0; r < rounds; r++ {
			c0 := cpuTime(b, unix.RUSAGE_SELF)
			s := &sample.Sample{}
			if err := l.Collect(ctx, s); err != nil {
				b.Fatal(err)
			}
			c1 := cpuTime(b, unix.RUSAGE_SELF)
			k0 := cpuTime(b, unix.RUSAGE_CHILDREN)
			if _, err := talkCommands(sb); err != nil {
				b.Fatal(err)
			}
			k1 := cpuTime(b, unix.RUSAGE_CHILDREN)
			c2 := cpuTime(b, unix.RUSAGE_SELF)
			collectCPU += c1 - c0
			talkCPU += k1 - k0
			talkParentCPU += c2 - c1
		}
	}
	total := float64(b.N * rounds)
	b.ReportMetric(float64(collectCPU.Microseconds())/total, "collect-cpu-µs/op")
	b.ReportMetric(float64(talkCPU.Microseconds())/total, "ss-cpu-µs/op")
	b.ReportMetric(float64(talkParentCPU.Microseconds())/total, "ss-spawn-cpu-µs/op")
	b.ReportMetric(float64(collectCPU)/float64(talkCPU), "collect/ss")
}

// benchPoller runs the 100 Hz accept-queue poller for 10 s and reports the
// process CPU it used as a share of one core.
func benchPoller(b *testing.B, n int) {
	sb, _ := benchSandbox(b, n)
	const window = 10 * time.Second
	for b.Loop() {
		c0 := cpuTime(b, unix.RUSAGE_SELF)
		t0 := time.Now()
		l := benchListenq(b, sb, defaultListenPoll)
		time.Sleep(window)
		r := l.peak.take()
		l.Close()
		wall := time.Since(t0)
		cpu := cpuTime(b, unix.RUSAGE_SELF) - c0
		if r.Failures > 0 {
			b.Fatalf("%d polls failed: %v", r.Failures, r.LastErr)
		}
		b.ReportMetric(100*float64(cpu)/float64(wall), "core-%")
		b.ReportMetric(float64(r.Polls)/wall.Seconds(), "polls/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(max(r.Polls, 1)), "cpu-µs/poll")
	}
}

func BenchmarkListenqCollectVsTalk(b *testing.B) {
	for _, n := range []int{0, 20000} {
		b.Run(fmt.Sprintf("established=%d", n), func(b *testing.B) { benchCollectVsTalk(b, n) })
	}
}

func BenchmarkListenqPoller100Hz(b *testing.B) {
	for _, n := range []int{0, 20000} {
		b.Run(fmt.Sprintf("established=%d", n), func(b *testing.B) { benchPoller(b, n) })
	}
}
