package source

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stormguard/stormguard/internal/listentrace"
	"github.com/stormguard/stormguard/internal/sample"
)

// errEBPFOff is the reason recorded when eBPF was turned off.
var errEBPFOff = errors.New("turned off (--ebpf=false or " + listentrace.Env + "=0)")

// ebpfSource reads the in-kernel counters of listentrace: accept wait,
// SYN rate and this listener's overflows. It wakes the sampler on the
// watched listener's first overflow (Set.Wakes).
type ebpfSource struct {
	tr *listentrace.Tracer
	// rw keeps Close from closing the programs and maps under a Collect
	// the sampler abandoned at its deadline and that is still reading
	// them; closed is set under it.
	rw     sync.RWMutex
	closed bool

	mu    sync.Mutex
	prev  listentrace.Counters
	prevT time.Time
	// hist is the last sample's histogram, which the next one shares
	// while no accept was counted (see fillEBPF).
	hist *sample.Histogram
	// shared is a Read taken for the accept-queue source's counts
	// (kernelCounts) at sharedAt, which this sample's Collect uses
	// instead of reading the maps again; hasShared says it is unused.
	shared    listentrace.Counters
	sharedAt  time.Time
	hasShared bool

	// counting is set while the last Read succeeded and knew the
	// watched listener: the sample then has this listener's own
	// overflows (listen.overflows_port), and the namespace-wide TCP
	// counters may go on a slow clock (TCPStat.SlowPeriod).
	counting atomic.Bool
}

// sharedFresh is how old a Read taken for the accept-queue source may be
// for Collect to use it: both run one after the other in the sampler's
// goroutine, microseconds apart; an older one (the ebpf source missed that
// sample) is not used and the maps are read again.
const sharedFresh = 5 * time.Millisecond

// kernelCounts reads the maps once for the sample: the accept-queue
// source takes the SYN_RECV/ESTABLISHED counts from it, and Collect, which
// follows in the same sample, the rest (no second read of the maps).
func (e *ebpfSource) kernelCounts() (established, synRecv uint64, err error) {
	e.rw.RLock()
	if e.closed {
		e.rw.RUnlock()
		return 0, 0, listentrace.ErrClosed
	}
	cur, err := e.tr.Read()
	e.rw.RUnlock()
	if err != nil {
		return 0, 0, err
	}
	e.mu.Lock()
	e.shared, e.sharedAt, e.hasShared = cur, time.Now(), true
	e.mu.Unlock()
	if cur.Listeners == 0 {
		return 0, 0, listentrace.ErrNoListener
	}
	return cur.Established, cur.SynRecv, nil
}

// takeShared returns the Read kernelCounts took for this sample, if fresh.
func (e *ebpfSource) takeShared(now time.Time) (listentrace.Counters, time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, at, ok := e.shared, e.sharedAt, e.hasShared
	e.hasShared = false
	if !ok || now.Sub(at) > sharedFresh || now.Before(at) {
		return listentrace.Counters{}, time.Time{}, false
	}
	return c, at, true
}

// countsOverflows reports whether the last Read gave this listener's own
// overflow count (see counting).
func (e *ebpfSource) countsOverflows() bool { return e.counting.Load() }

func openEBPF(ctx context.Context, o Options) (sample.Source, error) {
	if o.NoEBPF || listentrace.Off() {
		return nil, &Unavailable{Err: errEBPFOff}
	}
	tr, err := listentrace.Open(ctx, o.Target.NetNS, uint16(o.Target.Port()), o.logger())
	if err != nil {
		return nil, ebpfUnavailable(err)
	}
	o.logger().Debug("ebpf source attached", "target", o.Target.Name())
	return &ebpfSource{tr: tr, prevT: time.Now()}, nil
}

// ebpfUnavailable says why eBPF cannot run here, in one line.
func ebpfUnavailable(err error) error {
	switch {
	case errors.Is(err, listentrace.ErrPermission), errors.Is(err, listentrace.ErrNoBTF), errors.Is(err, listentrace.ErrUnsupported):
		return &Unavailable{Reason: err.Error(), Err: err}
	}
	return Classify("load eBPF programs", err)
}

func (*ebpfSource) Name() string { return "ebpf" }

// Prompt implements sample.Prompt: kernel state only, read in about a
// millisecond, so a wake-up's early sample waits for it.
func (*ebpfSource) Prompt() bool { return true }

// Wake fires on the watched listener's first overflow (Set.Wakes).
func (e *ebpfSource) Wake() <-chan struct{} { return e.tr.Wake() }

// WakeLevel: the wake-up means a connection is being dropped.
func (*ebpfSource) WakeLevel() sample.WakeLevel { return sample.WakeDropped }

func (e *ebpfSource) Close() error {
	e.rw.Lock()
	defer e.rw.Unlock()
	e.closed = true
	return e.tr.Close()
}

func (e *ebpfSource) Collect(_ context.Context, s *sample.Sample) error {
	cur, now, ok := e.takeShared(time.Now())
	if !ok {
		e.rw.RLock()
		if e.closed {
			e.rw.RUnlock()
			e.counting.Store(false)
			return errors.New("read eBPF maps: source closed")
		}
		var err error
		cur, err = e.tr.Read()
		e.rw.RUnlock()
		now = time.Now()
		if err != nil {
			e.counting.Store(false)
			return fmt.Errorf("read eBPF maps: %w", err)
		}
	}
	e.counting.Store(cur.Listeners > 0 && e.tr.NoListeners == "")
	e.mu.Lock()
	d := listentrace.Delta(e.prev, cur)
	elapsed := now.Sub(e.prevT)
	e.prev, e.prevT = cur, now
	e.hist = fillEBPF(s, cur, d, elapsed, e.hist)
	e.mu.Unlock()
	if e.tr.NoListeners != "" {
		return &Unavailable{Reason: "listen.overflows_port: " + e.tr.NoListeners}
	}
	return nil
}

// promBoundsSeconds are listentrace.PromBounds in seconds, shared by every
// sample's histogram (read only): one slice, not one per sample.
var promBoundsSeconds = func() []float64 {
	b := make([]float64, len(listentrace.PromBounds))
	for i, us := range listentrace.PromBounds {
		b[i] = float64(us) / 1e6
	}
	return b
}()

// ebpfPart holds the values a sample's eBPF keys point to: one allocation
// per sample instead of one per value.
type ebpfPart struct {
	wait                   sample.AcceptWait
	synRate, p50, p99, max float64
	accepts, overflows     uint64
}

// fillEBPF writes the sample's eBPF keys from the cumulative counters cur
// and the interval's delta d, and returns the sample's histogram. That is
// prev itself while it holds cur's counts: the histogram is cumulative, so
// while no accept was counted (every calm sample of an idle server) it has
// not changed, and samples are read-only once taken; at a 10 ms interval
// the hub's ten minutes of samples would otherwise hold 60,000 copies.
func fillEBPF(s *sample.Sample, cur, d listentrace.Counters, elapsed time.Duration, prev *sample.Histogram) *sample.Histogram {
	// One allocation for the part's values (see ebpfPart).
	v := &ebpfPart{accepts: cur.Accepts, overflows: cur.Drops}
	if elapsed > 0 {
		v.synRate = float64(d.SYNs) / elapsed.Seconds()
		s.SynRate = &v.synRate
	}
	ms := func(v time.Duration) float64 { return float64(v.Microseconds()) / 1000 }
	aw := &v.wait
	if p, ok := listentrace.Quantile(d, 0.5); ok {
		v.p50 = ms(p)
		aw.P50 = &v.p50
	}
	if p, ok := listentrace.Quantile(d, 0.99); ok {
		v.p99 = ms(p)
		aw.P99 = &v.p99
		mx := d.MaxWait
		if mx < p {
			// The longest wait's reset raced a new wait; the
			// histogram still bounds it from below.
			mx, _ = listentrace.Quantile(d, 1)
		}
		v.max = ms(mx)
		aw.Max = &v.max
	}
	s.AcceptWaitMS = aw
	if cur.Listeners > 0 {
		s.PortOverflows = &v.overflows
	}
	s.Accepts = &v.accepts
	var count uint64
	for _, n := range cur.Hist {
		count += n
	}
	sum := float64(cur.WaitSumUS) / 1e6
	if prev != nil && prev.Count == count && prev.Sum == sum {
		s.AcceptWaitHist = prev
		return prev
	}
	h := &sample.Histogram{Counts: listentrace.Cumulative(cur), Count: count, Sum: sum, Bounds: promBoundsSeconds}
	s.AcceptWaitHist = h
	return h
}
