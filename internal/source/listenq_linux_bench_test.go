//go:build linux

package source

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"runtime"
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

// TestListenqConnHolder is not a test: the benchmarks re-run the test binary as a
// connection holder (sandboxtest.RunConnHolder); the process fd limit here
// is a hard 20,000, so 20,000 client sockets need more than one process.
func TestListenqConnHolder(t *testing.T) { sandboxtest.RunConnHolder(t) }

func holdConns(b *testing.B, sb *sandbox.Sandbox, n int) {
	b.Helper()
	sandboxtest.HoldConns(b, sb, n, "TestListenqConnHolder")
}

// benchSandbox makes a sandbox with n established connections to Valkey's
// port. Valkey (maxclients 16000) accepts and serves the first 15,000, held
// by one holder process; for n > 15,000 Valkey is then frozen (SIGSTOP) and
// the rest complete their handshake into its accept queue (tcp-backlog
// 8192), held by a second process. Every one of them is an ESTABLISHED
// socket on the port, which is what the kernel walks and reports. Valkey
// cannot hold all 20,000 itself: its fd limit, inherited from this process,
// is a hard 20,000, so maxclients tops out at 19,968.
func benchSandbox(b *testing.B, n int) *sandbox.Sandbox {
	b.Helper()
	sb := sandboxtest.New(b, sandbox.Options{
		Sysctls:    map[string]string{"net.core.somaxconn": "8192"},
		ValkeyArgs: []string{"--maxclients", "16000", "--tcp-backlog", "8192"},
	})
	const served = 15000
	if n == 0 {
		return sb
	}
	holdConns(b, sb, min(n, served))
	if n > served {
		sandboxtest.Freeze(b, sb)
		holdConns(b, sb, n-served)
	}
	return sb
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

// ssCommands runs the two `ss` commands an operator would run by hand
// once inside the namespace,
// without a shell: `ss -Hln sport = :PORT` and `ss -anH state syn-recv | wc -l`.
// The children fork from a thread inside the namespace, so they see it.
func ssCommands(sb *sandbox.Sandbox) (listenLines int, err error) {
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

// benchCollectVsSS paces samples like `stormguard sample` does (every
// 500 ms, its default) and runs, at each, one full Collect (LISTEN dump,
// SYN_RECV/ESTABLISHED counts when the budget allows) and then one run of
// those two `ss` commands, so both see the same machine state. It reports
// the mean and the worst Collect against the mean of the commands: the mean
// is what the counting budget promises, the worst is a sample that counted.
//
// With withEBPF the programs are attached after the connections exist (the
// iterator's one walk counts them) and every sample takes the counts from
// the kernel (listenq.kernelCounts): no walk at any sample.
func benchCollectVsSS(b *testing.B, n int, withEBPF bool) {
	sb := benchSandbox(b, n)
	var kernel func() (uint64, uint64, error)
	if withEBPF {
		a, err := addr.Parse(sb.Addr())
		if err != nil {
			b.Fatal(err)
		}
		src, err := openEBPF(context.Background(), Options{Target: Target{Addr: a, NetNS: sb.NetNS}})
		if err != nil {
			b.Fatalf("open eBPF source: %v", err)
		}
		e := src.(*ebpfSource)
		b.Cleanup(func() { e.Close() })
		kernel = e.tr.Counts
	}
	l := benchListenq(b, sb, -1) // poller off: measure Collect alone
	l.kernelCounts = kernel
	ctx := context.Background()
	s := &sample.Sample{}
	if err := l.Collect(ctx, s); err != nil {
		b.Fatal(err)
	}
	if *s.Established < uint64(n) || s.Listen.Sockets != 2 {
		b.Fatalf("setup: established %d (want >= %d), sockets %d", *s.Established, n, s.Listen.Sockets)
	}
	if lines, err := ssCommands(sb); err != nil || lines != 2 {
		b.Fatalf("ss commands: %v, %d listen lines (want 2: IPv4 and IPv6)", err, lines)
	}
	const (
		samples  = 40
		interval = 500 * time.Millisecond
	)
	var collectCPU, collectMax, talkCPU, talkParentCPU time.Duration
	var counts, withCounts int
	var countCPU time.Duration
	b.ResetTimer()
	for b.Loop() {
		// A fresh source per run: its first sample always counts.
		l := benchListenq(b, sb, -1)
		l.kernelCounts = kernel
		tk := time.NewTicker(interval)
		for r := 0; r < samples; r++ {
			<-tk.C
			c0 := cpuTime(b, unix.RUSAGE_SELF)
			s := &sample.Sample{}
			if err := l.Collect(ctx, s); err != nil {
				b.Fatal(err)
			}
			c1 := cpuTime(b, unix.RUSAGE_SELF)
			if s.Established != nil && *s.Established >= uint64(n) {
				withCounts++
			}
			k0 := cpuTime(b, unix.RUSAGE_CHILDREN)
			if _, err := ssCommands(sb); err != nil {
				b.Fatal(err)
			}
			k1 := cpuTime(b, unix.RUSAGE_CHILDREN)
			c2 := cpuTime(b, unix.RUSAGE_SELF)
			collectCPU += c1 - c0
			collectMax = max(collectMax, c1-c0)
			talkCPU += k1 - k0
			talkParentCPU += c2 - c1
		}
		tk.Stop()
		counts += l.counts
		countCPU += l.countCPU
		l.Close()
	}
	// Where a count's cost goes: the same walk of the established hash
	// asking for SYN_RECV only (here none exist, so nothing is emitted)
	// is the walk alone; the rest of a count is building and reading one
	// message per ESTABLISHED socket of the port. Paced like the samples,
	// so caches are as cold as for a count.
	const walks = 5
	var walkCPU time.Duration
	for range walks {
		time.Sleep(interval)
		c, err := l.collConn()
		if err != nil {
			b.Fatal(err)
		}
		runtime.LockOSThread()
		t := diagTally{Port: l.port}
		c0 := threadCPU()
		err = c.dump(statesSynRecv, &t, time.Time{})
		walkCPU += threadCPU() - c0
		runtime.UnlockOSThread()
		if err != nil {
			b.Fatal(err)
		}
	}
	total := float64(b.N * samples)
	b.ReportMetric(float64(walkCPU.Microseconds())/walks, "walk-cpu-µs")
	b.ReportMetric(float64(collectCPU.Microseconds())/total, "collect-cpu-µs/op")
	b.ReportMetric(float64(collectMax.Microseconds()), "collect-max-cpu-µs")
	b.ReportMetric(float64(countCPU.Microseconds())/float64(max(counts, 1)), "count-cpu-µs")
	b.ReportMetric(float64(counts)/total, "counts/op")
	b.ReportMetric(float64(withCounts)/total, "with-counts/op")
	b.ReportMetric(float64(talkCPU.Microseconds())/total, "ss-cpu-µs/op")
	b.ReportMetric(float64(talkParentCPU.Microseconds())/total, "ss-spawn-cpu-µs/op")
	b.ReportMetric(float64(collectCPU)/float64(talkCPU), "collect/ss")
	b.ReportMetric(float64(collectMax)/(float64(talkCPU)/total), "worst/ss")
}

// cpuShare runs fn (which must return after about window) and returns the
// process CPU it used as a percentage of one core, and the voluntary context
// switches of all the process's threads (each one a thread going to sleep,
// so a wake-up to come) per 10 ms period.
func cpuShare(b *testing.B, fn func()) (pct, switches float64) {
	var r0, r1 unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &r0); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	fn()
	wall := time.Since(t0)
	if err := unix.Getrusage(unix.RUSAGE_SELF, &r1); err != nil {
		b.Fatal(err)
	}
	cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	return 100 * float64(cpu) / float64(wall), float64(r1.Nvcsw-r0.Nvcsw) / (float64(wall) / float64(defaultListenPoll))
}

// idleTicker is the cheapest a Go program can wake up 100 times a second
// with the runtime's timers: a time.Ticker and nothing else.
func idleTicker(window time.Duration) {
	tk := time.NewTicker(defaultListenPoll)
	defer tk.Stop()
	for t0 := time.Now(); time.Since(t0) < window; {
		<-tk.C
	}
}

// idleTimerfd is the poller's own wake-up without the poll: a goroutine
// waiting on the same 10 ms timerfd, read the same way.
func idleTimerfd(b *testing.B, window time.Duration) {
	f, err := newTickFile(defaultListenPoll)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	read := tickReader()
	for t0 := time.Now(); time.Since(t0) < window; {
		if err := rc.Read(read); err != nil {
			b.Fatal(err)
		}
	}
}

// benchPoller runs, one after the other in each round, the 100 Hz
// accept-queue poller, a goroutine waking on the same 10 ms timerfd without
// polling (the poller's wake-up alone), and a do-nothing Go ticker at 100 Hz,
// each for 10 s, and reports the process CPU of each as a share of one core.
// poller-net-% is the poller minus its own wake-up: what the polls cost.
func benchPoller(b *testing.B, n int) {
	sb := benchSandbox(b, n)
	const window = 10 * time.Second
	var poller, idle, ticker, pollerSw, idleSw, tickerSw float64
	var polls, lookups, dumps uint64
	var wall time.Duration
	for b.Loop() {
		var l *listenq
		var r peakReading
		t0 := time.Now()
		pct, sw := cpuShare(b, func() {
			l = benchListenq(b, sb, defaultListenPoll)
			time.Sleep(window)
			r = l.peak.take()
			l.Close()
		})
		poller, pollerSw = poller+pct, pollerSw+sw
		wall += time.Since(t0)
		if r.Failures > 0 {
			b.Fatalf("%d polls failed: %v", r.Failures, r.LastErr)
		}
		polls += r.Polls
		lookups += l.lookups.Load()
		dumps += l.dumps.Load()
		pct, sw = cpuShare(b, func() { idleTimerfd(b, window) })
		idle, idleSw = idle+pct, idleSw+sw
		pct, sw = cpuShare(b, func() { idleTicker(window) })
		ticker, tickerSw = ticker+pct, tickerSw+sw
	}
	runs := float64(b.N)
	b.ReportMetric(poller/runs, "poller-core-%")
	b.ReportMetric(idle/runs, "idle-timerfd-core-%")
	b.ReportMetric(ticker/runs, "idle-ticker-core-%")
	b.ReportMetric((poller-idle)/runs, "poller-net-%")
	b.ReportMetric(pollerSw/runs, "poller-sleeps/period")
	b.ReportMetric(idleSw/runs, "idle-timerfd-sleeps/period")
	b.ReportMetric(tickerSw/runs, "idle-ticker-sleeps/period")
	b.ReportMetric(float64(polls)/wall.Seconds(), "polls/s")
	b.ReportMetric(float64(lookups)/float64(max(lookups+dumps, 1)), "lookup-share")
}

func BenchmarkListenqCollectVsSS(b *testing.B) {
	for _, n := range []int{0, 20000} {
		b.Run(fmt.Sprintf("established=%d", n), func(b *testing.B) { benchCollectVsSS(b, n, false) })
		b.Run(fmt.Sprintf("established=%d/ebpf", n), func(b *testing.B) { benchCollectVsSS(b, n, true) })
	}
}

func BenchmarkListenqPoller100Hz(b *testing.B) {
	for _, n := range []int{0, 20000} {
		b.Run(fmt.Sprintf("established=%d", n), func(b *testing.B) { benchPoller(b, n) })
	}
}

// BenchmarkPeersDump measures (in CPU time, like the benchmarks above) one
// attribution dump (SYN_RECV+ESTABLISHED
// with addresses) plus the new-socket diff, at 1,000 and 10,000
// established connections, and with the 20,000 default limit vs a 2,000
// limit (the dump stops early).
func BenchmarkPeersDump(b *testing.B) {
	for _, tc := range []struct{ conns, limit int }{{1000, 0}, {10000, 0}, {10000, 2000}} {
		b.Run(fmt.Sprintf("conns=%d/limit=%d", tc.conns, tc.limit), func(b *testing.B) {
			sb := benchSandbox(b, tc.conns)
			a, err := addr.Parse(sb.Addr())
			if err != nil {
				b.Fatal(err)
			}
			p := newPeerDumper(Target{Addr: a, NetNS: sb.NetNS})
			defer p.close()
			var tr PeerTracker
			var n int
			cpu0 := cpuTime(b, unix.RUSAGE_SELF)
			for b.Loop() {
				d, err := p.dump(context.Background(), tc.limit)
				if err != nil {
					b.Fatal(err)
				}
				tr.Next(d)
				n = len(d.Peers)
			}
			b.ReportMetric(float64(n), "sockets")
			b.ReportMetric(float64((cpuTime(b, unix.RUSAGE_SELF)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// BenchmarkListenqSample10ms measures `stormguard sample --interval 10ms
// --count 50 --json` (the built binary, as a user runs it, Valkey frozen
// since it holds only 15,000 of the connections) with 18,000 connections on
// the port, against 50 runs of the two ss commands an operator would run by hand, in the same
// round: CPU of the child processes (getrusage RUSAGE_CHILDREN), so process
// start-up counts on both sides. It fails unless every sample has
// listen.depth.
func BenchmarkListenqSample10ms(b *testing.B) {
	const conns, samples = 18000, 50
	sb := benchSandbox(b, conns)
	bin := b.TempDir() + "/stormguard"
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/stormguard/stormguard/cmd/stormguard").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	var sampleCPU, talkCPU time.Duration
	var total, withDepth, withCounts int
	b.ResetTimer()
	for b.Loop() {
		k0 := cpuTime(b, unix.RUSAGE_CHILDREN)
		// Exit status 2 is expected: the frozen Valkey never answers.
		out, _ := exec.Command(bin, "sample", "--valkey", sb.Addr(), "--netns", sb.NetNS,
			"--interval", "10ms", "--count", strconv.Itoa(samples), "--json").Output()
		k1 := cpuTime(b, unix.RUSAGE_CHILDREN)
		for range samples {
			if _, err := ssCommands(sb); err != nil {
				b.Fatal(err)
			}
		}
		k2 := cpuTime(b, unix.RUSAGE_CHILDREN)
		sampleCPU += k1 - k0
		talkCPU += k2 - k1
		for i, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var s sample.Sample
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				b.Fatalf("sample output %q: %v", line, err)
			}
			total++
			if s.Listen != nil && s.Listen.Depth != nil {
				withDepth++
			} else {
				b.Logf("sample %d without listen.depth: errors %v, source durations %v", i, s.Errors, s.SourceDurations)
			}
			if s.Established != nil {
				withCounts++
			}
		}
	}
	if total != b.N*samples || withDepth != total {
		b.Fatalf("%d samples, %d with listen.depth; want %d, all", total, withDepth, b.N*samples)
	}
	runs := float64(b.N)
	b.ReportMetric(float64(sampleCPU.Milliseconds())/runs, "sample-50-cpu-ms")
	b.ReportMetric(float64(talkCPU.Milliseconds())/runs, "ss-50-cpu-ms")
	b.ReportMetric(float64(talkCPU)/float64(sampleCPU), "ss/sample")
	b.ReportMetric(float64(withDepth)/float64(total), "with-depth")
	b.ReportMetric(float64(withCounts)/float64(total), "with-counts")
}
