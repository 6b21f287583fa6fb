//go:build linux

package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/agent"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/procnet"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
)

// Helpers shared by the reliability tests and the watch benchmarks.

// overflowPoller watches the namespace's TcpExt ListenOverflows counter
// independently of the agent: it opens /proc/thread-self/net/netstat inside
// the namespace once and re-reads it every few milliseconds, recording the
// wall-clock time of every increase.
type overflowPoller struct {
	mu      sync.Mutex
	rises   []time.Time
	last    uint64
	polls   int
	errs    int
	lastErr error
	stop    func()
}

func startOverflowPoller(tb testing.TB, nsPath string, every time.Duration) *overflowPoller {
	tb.Helper()
	var f *os.File
	err := netns.Do(nsPath, func() error {
		var err error
		f, err = os.Open("/proc/thread-self/net/netstat")
		return err
	})
	if err != nil {
		tb.Fatalf("open netstat in %s: %v", nsPath, err)
	}
	buf := make([]byte, 64<<10)
	p := &overflowPoller{}
	v, err := readOverflows(f, buf)
	if err != nil {
		f.Close()
		tb.Fatal(err)
	}
	p.last = v
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			v, err := readOverflows(f, buf)
			now := time.Now()
			p.mu.Lock()
			p.polls++
			if err != nil {
				p.errs++
				p.lastErr = err
			} else {
				if v > p.last {
					p.rises = append(p.rises, now)
				}
				p.last = v
			}
			p.mu.Unlock()
		}
	}()
	var once sync.Once
	p.stop = func() { once.Do(func() { cancel(); <-done; f.Close() }) }
	tb.Cleanup(p.stop)
	return p
}

func readOverflows(f *os.File, buf []byte) (uint64, error) {
	n, err := f.ReadAt(buf, 0)
	if n == 0 && err != nil {
		return 0, fmt.Errorf("read netstat: %w", err)
	}
	st, err := procnet.ParseStats(bytes.NewReader(buf[:n]))
	if err != nil {
		return 0, err
	}
	v, ok := st["TcpExt"]["ListenOverflows"]
	if !ok {
		return 0, fmt.Errorf("no TcpExt ListenOverflows")
	}
	return v, nil
}

// first returns the first time ListenOverflows rose after t.
func (p *overflowPoller) first(after time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.rises {
		if r.After(after) {
			return r, true
		}
	}
	return time.Time{}, false
}

func (p *overflowPoller) value() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// transition is a state change as the agent reported it, stamped with the
// wall-clock time it was reported (not the sample's time).
type transition struct {
	at       time.Time
	from, to detect.State
	// s is the sample that caused the change.
	s *sample.Sample
}

// watchRec records the agent's samples and state changes.
type watchRec struct {
	mu      sync.Mutex
	state   detect.State
	trans   []transition
	samples []*sample.Sample
	states  []detect.State // the state after each of samples
	keep    int
}

func (r *watchRec) onSample(s *sample.Sample, st detect.State) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if st != r.state {
		r.trans = append(r.trans, transition{at: now, from: r.state, to: st, s: s})
		r.state = st
	}
	r.samples = append(r.samples, s)
	r.states = append(r.states, st)
	if r.keep > 0 && len(r.samples) > r.keep {
		r.samples = append(r.samples[:0], r.samples[len(r.samples)-r.keep:]...)
		r.states = append(r.states[:0], r.states[len(r.states)-r.keep:]...)
	}
}

// since returns the samples taken at or after t and the state after each.
func (r *watchRec) since(t time.Time) ([]*sample.Sample, []detect.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ss []*sample.Sample
	var st []detect.State
	for i, s := range r.samples {
		if !s.Time.Before(t) {
			ss = append(ss, s)
			st = append(st, r.states[i])
		}
	}
	return ss, st
}

func (r *watchRec) current() detect.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// firstTo returns the first transition into to after t.
func (r *watchRec) firstTo(to detect.State, after time.Time) (transition, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, tr := range r.trans {
		if tr.to == to && tr.at.After(after) {
			return tr, true
		}
	}
	return transition{}, false
}

func (r *watchRec) transitionsSince(after time.Time) []transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []transition
	for _, tr := range r.trans {
		if tr.at.After(after) {
			out = append(out, tr)
		}
	}
	return out
}

func (r *watchRec) samplesSince(after time.Time) []*sample.Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*sample.Sample
	for _, s := range r.samples {
		if !s.Time.Before(after) {
			out = append(out, s)
		}
	}
	return out
}

// waitState polls until the agent's state is want.
func (r *watchRec) waitState(tb testing.TB, want detect.State, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for r.current() != want {
		if time.Now().After(deadline) {
			tb.Fatalf("agent not %s within %s (state %s)", want, timeout, r.current())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runAgent starts an in-process agent on sb's Valkey, the one harness of
// the agent's tests; adjust may change the options (Journal, Notifier,
// Detector). It waits for the first sample with Valkey's fields and stops
// at cleanup.
func runAgent(tb testing.TB, sb *sandbox.Sandbox, interval time.Duration, adjust func(*agent.Options)) (*watchRec, *serve.Hub) {
	tb.Helper()
	rec := &watchRec{keep: 10000}
	hub, stop := startAgentInto(tb, sb, rec, interval, adjust)
	tb.Cleanup(stop)
	return rec, hub
}

// startAgentInto starts an agent recording into rec and waits for its first
// sample with Valkey's fields; stop ends it.
func startAgentInto(tb testing.TB, sb *sandbox.Sandbox, rec *watchRec, interval time.Duration, adjust func(*agent.Options)) (hub *serve.Hub, stop func()) {
	tb.Helper()
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		tb.Fatal(err)
	}
	hub = serve.NewHub(source.Names(), 100, 100)
	o := agent.Options{
		Targets:  []source.Target{{Addr: a, NetNS: sb.NetNS}},
		Interval: interval, Hub: hub,
	}
	if adjust != nil {
		adjust(&o)
	}
	// rec sees every sample; a test's own OnSample (set by adjust) too.
	own := o.OnSample
	o.OnSample = func(s *sample.Sample, st detect.State) {
		rec.onSample(s, st)
		if own != nil {
			own(s, st)
		}
	}
	ag, err := agent.New(o)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ag.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	deadline := time.Now().Add(20 * time.Second)
	for {
		ss := rec.samplesSince(time.Time{})
		if len(ss) > 0 && ss[len(ss)-1].Valkey != nil {
			break
		}
		if time.Now().After(deadline) {
			stop()
			tb.Fatalf("agent produced no sample with Valkey's fields within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return hub, stop
}

// waitSamples waits until rec holds at least n samples.
func waitSamples(tb testing.TB, rec *watchRec, n int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := len(rec.samplesSince(time.Time{}))
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d samples in %s, want %d", got, timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freezeStorm makes a storm: Valkey frozen (SIGSTOP) while clients
// non-blocking connects arrive at once from inside the namespace, more than
// the accept queue holds, so the kernel overflows it. Valkey is thawed after
// hold (or once stop returns true, checked every 10 ms, but never before
// minHold) and the client sockets are closed.
func freezeStorm(tb testing.TB, sb *sandbox.Sandbox, clients int, minHold, hold time.Duration, stop func() bool) {
	tb.Helper()
	defer sandboxtest.Freeze(tb, sb)()
	fds, err := sb.SYNBurst(clients)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	for time.Since(start) < hold {
		if time.Since(start) >= minHold && stop != nil && stop() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialLoop opens and closes short connections to sb's Valkey from inside
// the namespace at rate(elapsed) per second until ctx is done or rate
// returns 0. It returns how many connections it opened. Sockets are closed
// with RST (linger 0) so thousands per second do not exhaust ports in
// TIME_WAIT.
func dialLoop(ctx context.Context, sb *sandbox.Sandbox, rate func(time.Duration) float64) (int, error) {
	var opened int
	err := netns.Do(sb.NetNS, func() error {
		d := net.Dialer{Timeout: 100 * time.Millisecond}
		start := time.Now()
		next := start
		for ctx.Err() == nil {
			el := time.Since(start)
			r := rate(el)
			if r <= 0 {
				return nil
			}
			next = next.Add(time.Duration(float64(time.Second) / r))
			if wait := time.Until(next); wait > 0 {
				time.Sleep(wait)
			} else if wait < -100*time.Millisecond {
				next = time.Now() // fell behind: do not burst to catch up
			}
			c, err := d.DialContext(ctx, "tcp", sb.Addr())
			if err != nil {
				continue
			}
			opened++
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			c.Close()
		}
		return nil
	})
	return opened, err
}

// buildBinary builds cmd/stormguard into a temporary directory.
func buildBinary(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "stormguard")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/stormguard/stormguard/cmd/stormguard")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// goroutinesSettled returns the goroutine count after letting transient
// ones finish.
func goroutinesSettled() int {
	runtime.GC()
	time.Sleep(100 * time.Millisecond)
	return runtime.NumGoroutine()
}
