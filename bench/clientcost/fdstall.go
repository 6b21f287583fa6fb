//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// fdWorkers is how many connections fdStall has in flight at once: each
// worker dials, PINGs and waits for the answer (the server has accepted
// it then) before its next dial, so at most this many handshakes wait in
// the accept queue (its limit, 128 in the lab, is never reached: no SYN
// is dropped and no dial waits for a retransmit).
const fdWorkers = 64

// fdGap is the shortest pause in the server's answers fdStall reports:
// an idle server answers a worker's PING every ~20 µs here.
const fdGap = time.Millisecond

// fdSample is one reading of the server's main thread.
type fdSample struct {
	at        time.Duration
	state     byte
	wchan     string
	run, wait int64 // schedstat: ns on the CPU, ns waiting on the run queue
}

// fdStall opens n connections to a freshly started valkey-server (pid in
// VALKEY_PID), fdWorkers at a time, each with one PING answered, and
// samples the server's main thread (state, wchan, schedstat) meanwhile.
// Linux doubles a process's descriptor table when a new descriptor does
// not fit (expand_fdtable, fs/file.c), and a process whose table is
// shared by threads (valkey-server's background threads) waits one RCU
// grace period there, its accept() blocked: every pause in the answers
// is printed with the answers before it (the server's descriptors then:
// its base ones + that many, ± fdWorkers in flight) and what the thread
// was doing. Bounded: n dials, each with a 5 s deadline.
func fdStall(port, n int) error {
	pid, err := strconv.Atoi(os.Getenv("VALKEY_PID"))
	if err != nil || pid < 1 {
		return fmt.Errorf("fdstall: VALKEY_PID %q: need the server's pid", os.Getenv("VALKEY_PID"))
	}
	base, err := countFDs(pid)
	if err != nil {
		return err
	}
	// This process's own table would double at the same counts (and it
	// has threads too): grow it once now, so that every pause below is
	// the server's.
	if err := growTable(); err != nil {
		return err
	}
	size0 := fdSize(pid)
	start := time.Now()
	stop := make(chan struct{})
	samples := make(chan []fdSample, 1)
	go func() { samples <- sampleThread(pid, start, stop) }()
	answers, conns, err := fdDial(port, n, start)
	close(stop)
	smp := <-samples
	size1 := fdSize(pid)
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	if err != nil {
		return err
	}
	slices.Sort(answers)
	fmt.Printf("fdstall: %d connections in %.1f ms, server descriptors before %d, FDSize %s -> %s, %d samples of its main thread\n",
		n, ms(answers[len(answers)-1]), base, size0, size1, len(smp))
	for i := 1; i < len(answers); i++ {
		if gap := answers[i] - answers[i-1]; gap >= fdGap {
			fmt.Printf("fdstall: gap %.2f ms at %.1f ms after %d answers (descriptors %d-%d): %s\n",
				ms(gap), ms(answers[i-1]), i, base+i, base+i+fdWorkers, describe(smp, answers[i-1], answers[i]))
		}
	}
	// Per doubling: the longest pause while the server's descriptors
	// (base + answers, up to fdWorkers more in flight) reached the
	// table's size.
	t0, _ := strconv.Atoi(size0)
	for t := max(t0, 64); t <= base+n; t *= 2 {
		best, at := time.Duration(0), 0
		for i := 1; i < len(answers); i++ {
			if d := base + i; d <= t && d+fdWorkers >= t && answers[i]-answers[i-1] > best {
				best, at = answers[i]-answers[i-1], i
			}
		}
		if at > 0 {
			fmt.Printf("fdstall: doubling at %d descriptors: longest pause %.2f ms (%s)\n",
				t, ms(best), stateCounts(smp, answers[at-1], answers[at]))
		}
	}
	return nil
}

// stateCounts counts the samples within [from, to] whose thread was
// blocked in synchronize_rcu (state D), of all taken.
func stateCounts(smp []fdSample, from, to time.Duration) string {
	i, j := sampleAt(smp, from), sampleAt(smp, to)
	rcu := 0
	for _, s := range smp[i:j] {
		if s.state == 'D' && strings.HasPrefix(s.wchan, "synchronize_rcu") {
			rcu++
		}
	}
	return fmt.Sprintf("D synchronize_rcu in %d of %d samples", rcu, j-i)
}

// fdDial dials n connections with fdWorkers workers and returns when
// each got its PING's answer (since start) and the open connections.
func fdDial(port, n int, start time.Time) ([]time.Duration, []net.Conn, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	answers := make([]time.Duration, n)
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, fdWorkers)
	for range fdWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					errs <- fmt.Errorf("fdstall: dial %d: %w", i, err)
					return
				}
				conns[i] = c
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write([]byte("PING\r\n")); err != nil {
					errs <- fmt.Errorf("fdstall: write %d: %w", i, err)
					return
				}
				if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
					errs <- fmt.Errorf("fdstall: read %d: %w", i, err)
					return
				}
				answers[i] = time.Since(start)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, conns, err
	}
	return answers, conns, nil
}

// sampleThread reads the main thread's state, wchan and schedstat every
// ~100 µs until stop (at most 30 s, 300,000 samples).
func sampleThread(pid int, start time.Time, stop <-chan struct{}) []fdSample {
	dir := fmt.Sprintf("/proc/%d/task/%d/", pid, pid)
	var out []fdSample
	for len(out) < 300000 {
		select {
		case <-stop:
			return out
		default:
		}
		s := fdSample{at: time.Since(start)}
		if b, err := os.ReadFile(dir + "stat"); err == nil {
			if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) {
				s.state = b[i+2]
			}
		}
		if b, err := os.ReadFile(dir + "wchan"); err == nil {
			s.wchan = string(b)
		}
		if b, err := os.ReadFile(dir + "schedstat"); err == nil {
			f := strings.Fields(string(b))
			if len(f) >= 2 {
				s.run, _ = strconv.ParseInt(f[0], 10, 64)
				s.wait, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
		out = append(out, s)
		time.Sleep(100 * time.Microsecond)
	}
	return out
}

// describe says what the samples taken within [from, to] saw: the
// states and wchans, and the thread's time on the CPU and on the run
// queue between the last sample before and the first after.
func describe(smp []fdSample, from, to time.Duration) string {
	i := max(0, sampleAt(smp, from)-1)
	j := min(len(smp)-1, sampleAt(smp, to))
	if i >= j {
		return "no sample"
	}
	seen := map[string]int{}
	for _, s := range smp[i+1 : j] {
		w := s.wchan
		if w == "" || w == "0" {
			w = "-"
		}
		seen[string(s.state)+" "+w]++
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, fmt.Sprintf("%s x%d", k, seen[k]))
	}
	slices.Sort(keys)
	return fmt.Sprintf("ran %.2f ms, waited %.2f ms over %.2f ms sampled; %s",
		float64(smp[j].run-smp[i].run)/1e6, float64(smp[j].wait-smp[i].wait)/1e6, ms(smp[j].at-smp[i].at), strings.Join(keys, ", "))
}

// sampleAt is the index of the first sample at or after t.
func sampleAt(smp []fdSample, t time.Duration) int {
	i, _ := slices.BinarySearchFunc(smp, t, func(s fdSample, t time.Duration) int { return int(s.at - t) })
	return i
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// growTable sizes this process's descriptor table for its whole
// RLIMIT_NOFILE (Go raises the soft limit to the hard one) by placing a
// descriptor at its top and closing it: the table never shrinks.
func growTable() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("fdstall: getrlimit: %w", err)
	}
	top := int(min(lim.Cur, 1<<20)) - 1
	if err := syscall.Dup3(0, top, 0); err != nil {
		return fmt.Errorf("fdstall: dup to %d: %w", top, err)
	}
	return syscall.Close(top)
}

// countFDs is how many descriptors the process has open.
func countFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("fdstall: %w", err)
	}
	return len(ents), nil
}

// fdSize is the FDSize line of /proc/PID/status: the descriptor table's size.
func fdSize(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "FDSize:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
