//go:build linux && (amd64 || arm64)

package listentrace

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// The programs' cost (bench/ebpf.sh; figures in docs/benchmarks.md, "eBPF
// source"). Gated by STORMGUARD_BENCH=1: never part of `make test`.

func requireBench(t *testing.T) {
	t.Helper()
	if os.Getenv("STORMGUARD_BENCH") != "1" {
		t.Skip("benchmark: set STORMGUARD_BENCH=1 (bench/ebpf.sh)")
	}
	if Off() {
		t.Skipf("%s turns eBPF off", Env)
	}
	sandboxtest.Require(t)
}

func benchEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// progStats is one reading of every loaded program's kernel statistics
// (run count and run time, kept while kernel.bpf_stats_enabled is on).
type progStats map[string]ebpf.ProgramStats

func (t *Tracer) progStats() (progStats, error) {
	out := progStats{}
	v := reflect.ValueOf(t.objs.programs)
	for i := range v.NumField() {
		p, ok := v.Field(i).Interface().(*ebpf.Program)
		if !ok || p == nil {
			continue
		}
		st, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("program %s stats: %w", v.Type().Field(i).Tag.Get("ebpf"), err)
		}
		out[v.Type().Field(i).Tag.Get("ebpf")] = *st
	}
	return out, nil
}

// report logs each program's runs and time between a and b, per unit
// (e.g. per connection) when units > 0, and returns the total run time.
func report(t *testing.T, label string, a, b progStats, units uint64) time.Duration {
	var names []string
	for n := range b {
		names = append(names, n)
	}
	sort.Strings(names)
	var total time.Duration
	for _, n := range names {
		runs := b[n].RunCount - a[n].RunCount
		rt := b[n].Runtime - a[n].Runtime
		total += rt
		if runs == 0 {
			continue
		}
		line := fmt.Sprintf("%s: %-24s runs %9d  %6.0f ns/run", label, n, runs, float64(rt.Nanoseconds())/float64(runs))
		if units > 0 {
			line += fmt.Sprintf("  %5.2f runs and %6.0f ns per connection", float64(runs)/float64(units), float64(rt.Nanoseconds())/float64(units))
		}
		t.Log(line)
	}
	return total
}

// syscallNS times a trivial system call (getppid) on a locked thread:
// enabling any syscall tracepoint sends every system call of every process
// through the kernel's tracing slow path, a cost bpf_stats does not see.
func syscallNS(n int) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	for range n {
		unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

// TestBenchEBPFCost measures what the programs cost, with the kernel's own
// per-program statistics (kernel.bpf_stats_enabled): idle (the watched port
// gets nothing; every other socket and accept() on the host still runs the
// tracepoints), then under valkey-benchmark opening a new connection per
// request to a sandboxed Valkey (STORMGUARD_BENCH_CONNS, 100,000). It also
// times getppid(2) with and without the programs attached (the syscall
// tracepoints' host-wide tax).
func TestBenchEBPFCost(t *testing.T) {
	requireBench(t)
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{"net.core.somaxconn": "4096"}})
	t.Logf("RESULT load before: %s", loadavg())

	const calls = 2_000_000
	var without, with []float64
	var err error
	for range 3 {
		without = append(without, syscallNS(calls))
		tr, err := Open(context.Background(), sb.NetNS, uint16(sb.Port), nil)
		if err != nil {
			t.Fatal(err)
		}
		with = append(with, syscallNS(calls))
		tr.Close()
	}
	t.Logf("RESULT getppid ns/call without programs %.1f %.1f %.1f, with %.1f %.1f %.1f", without[0], without[1], without[2], with[0], with[1], with[2])

	// A/B: the CPU the storm costs Valkey and the client (their own time
	// plus the kernel's, the programs included) per connection, with and
	// without the programs attached, alternating; statistics off.
	abConns := benchEnvInt("STORMGUARD_BENCH_AB_CONNS", 30000)
	var off, on []float64
	for round := range 4 {
		attached := round%2 == 1
		var tr *Tracer
		if attached {
			if tr, err = Open(context.Background(), sb.NetNS, uint16(sb.Port), nil); err != nil {
				t.Fatal(err)
			}
		}
		ns := stormCPU(t, sb, abConns)
		if attached {
			tr.Close()
			on = append(on, ns)
		} else {
			off = append(off, ns)
		}
	}
	t.Logf("RESULT A/B %d connections per round: CPU per connection (Valkey + valkey-benchmark + their kernel time) without programs %.0f, %.0f ns; with %.0f, %.0f ns; difference of the means %.0f ns = %.2f%% of one core at 20,000/s",
		abConns, off[0], off[1], on[0], on[1], (on[0]+on[1]-off[0]-off[1])/2, 100*(on[0]+on[1]-off[0]-off[1])/2*20000/1e9)

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF run-time statistics: %v", err)
	}
	defer stats.Close()
	tr, err := Open(context.Background(), sb.NetNS, uint16(sb.Port), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	idle := time.Duration(benchEnvInt("STORMGUARD_BENCH_IDLE_S", 10)) * time.Second
	a, err := tr.progStats()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// The idle period is the quantity measured.
	time.Sleep(idle)
	b, err := tr.progStats()
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	total := report(t, "idle", a, b, 0)
	t.Logf("RESULT idle %v: programs ran %v = %.4f%% of one core (host-wide sockets and accept() of other work on this machine)", wall.Round(time.Millisecond), total, 100*total.Seconds()/wall.Seconds())

	conns := benchEnvInt("STORMGUARD_BENCH_CONNS", 100000)
	watched := loadPass(t, sb, tr, conns, "load")
	tr.Close()
	// The same load with the programs watching a port nobody uses: every
	// run returns after its first compare. That is what the client end of
	// each loopback connection costs in the pass above (in production the
	// clients are on other hosts), and what any other TCP traffic on the
	// host costs.
	other, err := Open(context.Background(), sb.NetNS, uint16(sb.Port+1), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	unwatched := loadPass(t, sb, other, conns, "unwatched")
	// A loopback connection's ten state changes are five per end (client:
	// SYN_SENT, ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE; server: the
	// child's SYN_RECV, ESTABLISHED, CLOSE_WAIT, LAST_ACK, CLOSE): the
	// client's five are early returns, priced by the unwatched pass.
	client := unwatched.stateNS / 2
	t.Logf("RESULT server end, whole-pass estimate: %.0f − client end %.0f (half the unwatched pass's state changes) = %.0f ns per connection = %.2f%% of one core at 20,000/s (includes other processes' TCP traffic during the pass)",
		watched.perConn, client, watched.perConn-client, 100*(watched.perConn-client)*20000/1e9)
	other.Close()
	serverEnd(t, watched, unwatched)
	floor := emptyPass(t, sb, conns)
	t.Logf("RESULT floor: the server end's 5 state changes, 1 accept exit and 1 sk_lookup at an empty program's run cost = %.0f ns per connection = %.2f%% of one core at 20,000/s",
		floor, 100*floor*20000/1e9)
	t.Logf("RESULT load after: %s", loadavg())
}

// emptyPass runs the load with programs that return at once attached
// where the real ones are (the state-change tracepoint, both accept exits,
// sk_lookup in the namespace): what a run costs before any of its work on
// this machine. It returns what the server end's runs (five state changes,
// one accept exit, one sk_lookup) cost at that price: the floor any
// program at these points pays.
func emptyPass(t *testing.T, sb *sandbox.Sandbox, conns int) float64 {
	t.Helper()
	ret := func(v int32) asm.Instructions { return asm.Instructions{asm.Mov.Imm(asm.R0, v), asm.Return()} }
	specs := map[string]*ebpf.ProgramSpec{
		"state":   {Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "inet_sock_set_state", Instructions: ret(0), License: "GPL"},
		"accept4": {Type: ebpf.TracePoint, Instructions: ret(0), License: "GPL"},
		"accept":  {Type: ebpf.TracePoint, Instructions: ret(0), License: "GPL"},
		"lookup":  {Type: ebpf.SkLookup, AttachType: ebpf.AttachSkLookup, Instructions: ret(1), License: "GPL"},
	}
	progs := map[string]*ebpf.Program{}
	for name, spec := range specs {
		p, err := ebpf.NewProgram(spec)
		if err != nil {
			t.Fatalf("load empty %s program: %v", name, err)
		}
		defer p.Close()
		progs[name] = p
	}
	ns, err := os.Open(sb.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var links []link.Link
	attach := func(l link.Link, err error) {
		if err != nil {
			t.Fatalf("attach an empty program: %v", err)
		}
		links = append(links, l)
	}
	attach(link.AttachTracing(link.TracingOptions{Program: progs["state"]}))
	attach(link.Tracepoint("syscalls", "sys_exit_accept4", progs["accept4"], nil))
	attach(link.Tracepoint("syscalls", "sys_exit_accept", progs["accept"], nil))
	attach(link.AttachNetNs(int(ns.Fd()), progs["lookup"]))
	defer func() {
		for _, l := range links {
			l.Close()
		}
	}()
	read := func() progStats {
		out := progStats{}
		for name, p := range progs {
			st, err := p.Stats()
			if err != nil {
				t.Fatal(err)
			}
			out[name] = *st
		}
		return out
	}
	p0 := passiveOpens(t, sb)
	a := read()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := sb.Command(ctx, "valkey-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(sb.Port),
		"-c", "50", "-n", strconv.Itoa(conns), "-k", "0", "-t", "ping_inline", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("valkey-benchmark: %v: %s", err, out)
	}
	b := read()
	opens := passiveOpens(t, sb) - p0
	if opens == 0 {
		t.Fatal("no connections opened")
	}
	report(t, "empty", a, b, opens)
	runs, took := kinds(a, b)
	per := func(k string) float64 { return took[k] / runs[k] }
	return 5*per("state") + per("accept") + per("lookup")
}

// pass is one load pass's cost per connection.
type pass struct {
	perConn float64 // every program, ns per connection
	stateNS float64 // the state-change program, ns per connection
	// opens and accepts are the connections the namespace opened and
	// the accepts the programs counted; runs and ns each program kind's
	// runs and run time in the pass ("state", "accept" (both exits),
	// "lookup").
	opens, accepts uint64
	runs, ns       map[string]float64
}

// kinds sums a statistics delta by program kind (state, accept, lookup).
func kinds(a, b progStats) (runs, ns map[string]float64) {
	runs, ns = map[string]float64{}, map[string]float64{}
	for n := range b {
		k := ""
		switch {
		case n == "on_set_state" || n == "state":
			k = "state"
		case strings.Contains(n, "accept"):
			k = "accept"
		case n == "on_sk_lookup" || n == "lookup":
			k = "lookup"
		default:
			continue
		}
		runs[k] += float64(b[n].RunCount - a[n].RunCount)
		ns[k] += float64((b[n].Runtime - a[n].Runtime).Nanoseconds())
	}
	return runs, ns
}

// serverEnd prices what one connection's server end costs from the
// watched pass w, robustly against the other TCP traffic of this shared
// machine (whose runs are early returns in every pass): per connection
// the server end makes three state-change runs that work (the child's
// creation, into and out of ESTABLISHED), two that return at the state
// test, one accept exit that works and one sk_lookup. The runs beyond the
// working ones are priced at the unwatched pass's early-return cost (u),
// the rest is the working runs' cost.
func serverEnd(t *testing.T, w, u pass) float64 {
	earlyState := u.ns["state"] / u.runs["state"]
	earlyAccept := u.ns["accept"] / u.runs["accept"]
	opens, accepts := float64(w.opens), float64(w.accepts)
	workState := (w.ns["state"] - (w.runs["state"]-3*opens)*earlyState) / (3 * opens)
	workAccept := (w.ns["accept"] - (w.runs["accept"]-accepts)*earlyAccept) / accepts
	lookup := w.ns["lookup"] / w.runs["lookup"]
	total := 3*workState + 2*earlyState + workAccept + lookup
	t.Logf("RESULT server end: 3 working state changes × %.0f + 2 early × %.0f + accept exit %.0f + sk_lookup %.0f = %.0f ns per connection = %.2f%% of one core at 20,000/s (working runs priced against early returns at the unwatched pass's %.0f ns state, %.0f ns accept)",
		workState, earlyState, workAccept, lookup, total, 100*total*20000/1e9, earlyState, earlyAccept)
	return total
}

// loadPass runs valkey-benchmark opening a new connection per request
// (conns requests) against the sandbox with tr attached, and logs and
// returns what the programs cost per connection (the namespace's
// PassiveOpens: the connections Valkey's listener took).
func loadPass(t *testing.T, sb *sandbox.Sandbox, tr *Tracer, conns int, label string) pass {
	t.Helper()
	c0, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	p0 := passiveOpens(t, sb)
	est0, _, estErr := tr.Counts() // ErrNoListener when watching an unused port
	a, err := tr.progStats()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := sb.Command(ctx, "valkey-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(sb.Port),
		"-c", "50", "-n", strconv.Itoa(conns), "-k", "0", "-t", "ping_inline", "-q").CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		t.Fatalf("valkey-benchmark: %v: %s", err, out)
	}
	b, err := tr.progStats()
	if err != nil {
		t.Fatal(err)
	}
	c1, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	opens := passiveOpens(t, sb) - p0
	if opens == 0 {
		t.Fatal("no connections opened")
	}
	total := report(t, label, a, b, opens)
	rate := float64(opens) / wall.Seconds()
	perConn := float64(total.Nanoseconds()) / float64(opens)
	st := b["on_set_state"].Runtime - a["on_set_state"].Runtime
	t.Logf("RESULT %s: %d connections (programs counted %d SYNs, %d accepts) in %v = %.0f/s; programs %.0f ns per connection = %.2f%% of one core at this rate, %.2f%% at 20,000/s; load %s",
		label, opens, c1.SYNs-c0.SYNs, c1.Accepts-c0.Accepts, wall.Round(time.Millisecond), rate, perConn, 100*total.Seconds()/wall.Seconds(), 100*perConn*20000/1e9, loadavg())
	var misses uint64
	for n := range b {
		misses += b[n].RecursionMisses - a[n].RecursionMisses
	}
	if estErr == nil {
		// Every connection was closed by the benchmark: the count must
		// come back (the server ends leave ESTABLISHED when the client's
		// FIN arrives, within milliseconds).
		est1, deadline := est0+1, time.Now().Add(2*time.Second)
		for est1 != est0 && time.Now().Before(deadline) {
			if est1, _, err = tr.Counts(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("RESULT %s: ESTABLISHED count %d before, %d after; runs the kernel skipped (another program running on the CPU) %d", label, est0, est1, misses)
		if est1 != est0 {
			t.Errorf("ESTABLISHED count %d after the load, want %d as before it", est1, est0)
		}
	}
	runs, ns := kinds(a, b)
	return pass{perConn: perConn, stateNS: float64(st.Nanoseconds()) / float64(opens),
		opens: opens, accepts: c1.Accepts - c0.Accepts, runs: runs, ns: ns}
}

// passiveOpens reads the sandbox namespace's TCP PassiveOpens (/proc/net/snmp).
func passiveOpens(t *testing.T, sb *sandbox.Sandbox) uint64 {
	t.Helper()
	out, err := sb.Command(context.Background(), "cat", "/proc/net/snmp").Output()
	if err != nil {
		t.Fatalf("read /proc/net/snmp: %v", err)
	}
	var head []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, k := range head {
			if k == "PassiveOpens" && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatal("no Tcp PassiveOpens in /proc/net/snmp")
	return 0
}

// taskCPU is a process's CPU time from /proc/PID/schedstat (ns).
func taskCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		t.Fatalf("schedstat of %d: %q", pid, b)
	}
	v, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(v)
}

// threadsCPU sums taskCPU over a process's threads.
func threadsCPU(t *testing.T, pid int) time.Duration {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var sum time.Duration
	for _, e := range ents {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, e.Name()))
		if err != nil {
			continue
		}
		if v, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64); err == nil {
			sum += time.Duration(v)
		}
	}
	return sum
}

// stormCPU runs valkey-benchmark -k 0 for n connections and returns the
// CPU Valkey and the benchmark used per connection, in ns.
func stormCPU(t *testing.T, sb *sandbox.Sandbox, n int) float64 {
	var r0, r1 unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &r0); err != nil {
		t.Fatal(err)
	}
	v0 := threadsCPU(t, sb.ValkeyPID())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := sb.Command(ctx, "valkey-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(sb.Port),
		"-c", "50", "-n", strconv.Itoa(n), "-k", "0", "-t", "ping_inline", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("valkey-benchmark: %v: %s", err, out)
	}
	v1 := threadsCPU(t, sb.ValkeyPID())
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &r1); err != nil {
		t.Fatal(err)
	}
	client := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	return float64((v1 - v0 + client).Nanoseconds()) / float64(n)
}
