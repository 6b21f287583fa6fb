//go:build linux && (amd64 || arm64)

package listentrace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/netns"
)

// Tracer is the loaded and attached programs for one watched port.
type Tracer struct {
	objs objects
	// ProbeReads is true when the accept programs follow the file
	// descriptor with a probe read per hop (kernels without
	// bpf_rdonly_cast, before 6.2) instead of typed loads.
	ProbeReads bool
	links      []link.Link
	rd         *ringbuf.Reader
	wake       chan struct{}
	done       chan struct{}
	close      sync.Once
	// mu keeps Close from freeing the maps and programs under a Read,
	// Counts or walk still using them (a sampler may abandon a Read at
	// its deadline and stop the agent meanwhile); closed is set under it.
	mu     sync.RWMutex
	closed bool
	// zeroMax is the per-CPU zero value written to wait_max after a read.
	zeroMax []uint64
	// raw reads the maps for Read without telling the Go runtime
	// (rawMaps); rawOff is set once a raw read failed.
	raw    *rawMaps
	rawOff atomic.Bool
	log    *slog.Logger
	// lastEvent is the kernel time (CLOCK_MONOTONIC ns) of the latest
	// overflow record read.
	lastEvent atomic.Uint64
	// NoListeners says why the listening sockets cannot be learned
	// ("" = they can): no per-listener overflows or wake-up then.
	NoListeners string

	// nsPath is the watched namespace; iter the TCP socket iterator,
	// walked there by relearn.
	nsPath string
	iter   *link.Iter
	// relearnReq asks the relearn goroutine for a walk; walkMu
	// serialises walks and guards lastWalk.
	relearnReq chan struct{}
	walkMu     sync.Mutex
	lastWalk   time.Time
	walks      atomic.Uint64
}

// relearnGap is the shortest spacing of walks asked for after Open (a
// Valkey restart makes a new listening socket; the programs ask for a walk
// when a connection arrives and no listener is known).
const relearnGap = time.Second

// Supported reports whether this build has the programs (linux, amd64 or arm64).
const Supported = true

// Open loads the programs for port in the network namespace at nsPath
// ("" = stormguard's own) and attaches them. Close detaches them.
func Open(ctx context.Context, nsPath string, port uint16, log *slog.Logger) (*Tracer, error) {
	return open(ctx, nsPath, port, log, false)
}

// programs are the programs Open loads: the generated set less the accept
// programs' probe-read variants, which stand in for the typed-load ones
// (same names here) only when those do not load.
type programs struct {
	OnAccept4Exit     *ebpf.Program `ebpf:"on_accept4_exit"`
	OnAcceptExitPlain *ebpf.Program `ebpf:"on_accept_exit_plain"`
	OnSetState        *ebpf.Program `ebpf:"on_set_state"`
	OnSkLookup        *ebpf.Program `ebpf:"on_sk_lookup"`
	ReadDrops         *ebpf.Program `ebpf:"read_drops"`
	Walk              *ebpf.Program `ebpf:"walk"`
}

type objects struct {
	programs
	listentraceMaps
	listentraceVariables
}

func (o *objects) Close() error {
	return _ListentraceClose(o.OnAccept4Exit, o.OnAcceptExitPlain, o.OnSetState, o.OnSkLookup, o.ReadDrops, o.Walk, &o.listentraceMaps)
}

// load loads the programs, the accept ones with typed loads unless probe
// (or the kernel refuses them: bpf_rdonly_cast is 6.2, the other programs
// 5.13), then with probe reads. It reports which it loaded.
func load(spec *ebpf.CollectionSpec, objs *objects, probe bool, log *slog.Logger) (bool, error) {
	if !probe {
		err := spec.LoadAndAssign(objs, nil)
		if err == nil || isPerm(err) {
			return false, err
		}
		log.Info("ebpf: the accept programs' typed loads do not load here; using probe reads", "err", err)
	}
	spec = spec.Copy()
	spec.Programs["on_accept4_exit"] = spec.Programs["on_accept4_exit_probe"]
	spec.Programs["on_accept_exit_plain"] = spec.Programs["on_accept_exit_plain_probe"]
	return true, spec.LoadAndAssign(objs, nil)
}

// open is Open; probe loads the accept programs' probe-read variants
// (tests cover both).
func open(ctx context.Context, nsPath string, port uint16, log *slog.Logger, probe bool) (*Tracer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, ErrNoBTF
	}
	if nsPath == "" {
		nsPath = "/proc/self/ns/net"
	}
	ns, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	defer ns.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(ns.Fd()), &st); err != nil {
		return nil, fmt.Errorf("stat network namespace: %w", err)
	}
	if err := ensureTracefs(log); err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
	_ = rlimit.RemoveMemlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	spec, err := loadListentrace()
	if err != nil {
		return nil, fmt.Errorf("parse BPF object: %w", err)
	}
	if err := spec.Variables["watch_netns"].Set(uint32(st.Ino)); err != nil {
		return nil, fmt.Errorf("set watched namespace: %w", err)
	}
	if err := spec.Variables["watch_port"].Set(port); err != nil {
		return nil, fmt.Errorf("set watched port: %w", err)
	}
	var objs objects
	probe, err = load(spec, &objs, probe, log)
	if err != nil {
		if isPerm(err) {
			return nil, fmt.Errorf("%w: %v", ErrPermission, err)
		}
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			log.Debug("ebpf: verifier log", "log", fmt.Sprintf("%+v", ve))
		}
		return nil, fmt.Errorf("load BPF programs: %w", err)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		objs.Close()
		return nil, fmt.Errorf("count possible CPUs: %w", err)
	}
	t := &Tracer{objs: objs, ProbeReads: probe, wake: make(chan struct{}, 1), done: make(chan struct{}), zeroMax: make([]uint64, ncpu), log: log,
		nsPath: nsPath, relearnReq: make(chan struct{}, 1)}
	t.raw = newRawMaps(t, ncpu)
	attachments := []struct {
		what string
		do   func() (link.Link, error)
		// optional attachments may fail: the listeners then stay
		// unknown (no overflows, no wake-up). None is optional now.
		optional bool
	}{
		{"tracepoint (BTF) sock:inet_sock_set_state", func() (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: objs.OnSetState})
		}, false},
		{"tracepoint syscalls:sys_exit_accept4", func() (link.Link, error) {
			return link.Tracepoint("syscalls", "sys_exit_accept4", objs.OnAccept4Exit, nil)
		}, false},
		{"tracepoint syscalls:sys_exit_accept", func() (link.Link, error) {
			return link.Tracepoint("syscalls", "sys_exit_accept", objs.OnAcceptExitPlain, nil)
		}, false},
		{"TCP socket iterator", func() (link.Link, error) {
			it, err := link.AttachIter(link.IterOptions{Program: objs.Walk})
			t.iter = it
			return it, err
		}, false},
		{"sk_lookup in the namespace", func() (link.Link, error) {
			return link.AttachNetNs(int(ns.Fd()), objs.OnSkLookup)
		}, false},
	}
	for _, a := range attachments {
		l, err := a.do()
		if err != nil && a.optional {
			t.NoListeners = fmt.Sprintf("attach %s: %v", a.what, err)
			log.Info("ebpf: per-listener overflows and the overflow wake-up are unavailable", "err", t.NoListeners)
			continue
		}
		if err != nil {
			t.Close()
			if isPerm(err) {
				return nil, fmt.Errorf("%w: attach %s: %v", ErrPermission, a.what, err)
			}
			return nil, fmt.Errorf("attach %s: %w", a.what, err)
		}
		t.links = append(t.links, l)
	}
	t.rd, err = ringbuf.NewReader(objs.Events)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	// The state-change program is attached: one walk now learns the
	// listeners and counts the sockets that were there before it.
	if err := t.walk(); err != nil {
		t.Close()
		return nil, err
	}
	// From now on the programs count new sockets without a per-socket
	// flag (see established_enter in bpf/listentrace.c).
	if err := objs.WalkDone.Set(uint32(1)); err != nil {
		t.Close()
		return nil, fmt.Errorf("end the first walk: %w", err)
	}
	go t.readEvents()
	go t.relearner()
	return t, nil
}

// walk runs the TCP socket iterator once in the watched namespace (an
// iterator walks the namespace of the process that opens it).
func (t *Tracer) walk() error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return ErrClosed
	}
	t.walkMu.Lock()
	defer t.walkMu.Unlock()
	var rd io.ReadCloser
	err := netns.Do(t.nsPath, func() error {
		var err error
		rd, err = t.iter.Open()
		return err
	})
	if err != nil {
		return fmt.Errorf("open TCP socket iterator: %w", err)
	}
	defer rd.Close()
	// The program writes nothing: reading to the end is the walk.
	if _, err := io.Copy(io.Discard, rd); err != nil {
		return fmt.Errorf("walk TCP sockets: %w", err)
	}
	t.lastWalk = time.Now()
	t.walks.Add(1)
	return nil
}

// askRelearn asks for a walk (at most one per relearnGap).
func (t *Tracer) askRelearn() {
	select {
	case t.relearnReq <- struct{}{}:
	default:
	}
}

// relearner walks again when asked, no more often than relearnGap.
func (t *Tracer) relearner() {
	for {
		select {
		case <-t.done:
			return
		case <-t.relearnReq:
		}
		t.walkMu.Lock()
		wait := relearnGap - time.Since(t.lastWalk)
		t.walkMu.Unlock()
		if wait > 0 {
			tm := time.NewTimer(wait)
			select {
			case <-t.done:
				tm.Stop()
				return
			case <-tm.C:
			}
		}
		if err := t.walk(); err != nil {
			t.log.Debug("ebpf: relearn listeners", "err", err)
		}
	}
}

// ensureTracefs mounts tracefs at /sys/kernel/tracing when neither it nor
// debugfs's tracing directory is mounted: the syscall tracepoints are
// found by name there. systemd mounts it at boot; minimal VM and container
// images often do not.
func ensureTracefs(log *slog.Logger) error {
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(dir + "/events"); err == nil {
			return nil
		}
	}
	if err := unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: %w", err)
	}
	log.Info("ebpf: mounted tracefs at /sys/kernel/tracing (the syscall tracepoints are found there)")
	return nil
}

func isPerm(err error) bool {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return false
	}
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, os.ErrPermission)
}

func (t *Tracer) Wake() <-chan struct{} { return t.wake }

// Walks is how many times the TCP iterator has walked the namespace (the
// first walk at Open included): each restart of Valkey should add one,
// which is how the tests see that the listeners were learned again.
func (t *Tracer) Walks() uint64 { return t.walks.Load() }

func (t *Tracer) readEvents() {
	for {
		rec, err := t.rd.Read()
		if err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			t.log.Debug("ebpf: ring buffer read", "err", err)
			select {
			case <-t.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		ev, err := decodeEvent(rec.RawSample)
		if err != nil {
			t.log.Debug("ebpf: bad event", "err", err)
			continue
		}
		if ev.Kind == EventRelearn {
			t.askRelearn()
			continue
		}
		t.lastEvent.Store(ev.KernelNS)
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// WakeDelay is how long after the latest overflow record was written in
// the kernel now is (both CLOCK_MONOTONIC): right after Wake fires, the
// kernel-to-user-space delay of the wake-up. ok is false before any record.
func (t *Tracer) WakeDelay() (d time.Duration, ok bool) {
	k := t.lastEvent.Load()
	if k == 0 {
		return 0, false
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano() - int64(k)), true
}

// Read returns the port's counters summed over CPUs, and the longest wait
// since the previous Read (which it resets). It reads with raw system
// calls (rawMaps) and falls back to the library's for good if they fail.
func (t *Tracer) Read() (Counters, error) {
	var c Counters
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return c, ErrClosed
	}
	if r := t.raw; r != nil && !t.rawOff.Load() {
		r.mu.Lock()
		err := r.read()
		if err == nil {
			c = t.sum(r.stats, r.drops, r.waitMax)
		}
		r.mu.Unlock()
		if err == nil {
			return c, nil
		}
		t.rawOff.Store(true)
		t.log.Info("ebpf: raw map reads failed; reading through the library from now on", "err", err)
	}
	return t.readLib()
}

// readLib is Read through the cilium/ebpf library's calls.
func (t *Tracer) readLib() (Counters, error) {
	var per []listentracePortStats
	if err := t.objs.Stats.Lookup(uint32(0), &per); err != nil {
		return Counters{}, fmt.Errorf("read port stats: %w", err)
	}
	// read_drops reads the learned listeners' drop counters inside the
	// kernel (kernel memory is not readable from here) into the drops map.
	if _, err := t.objs.ReadDrops.Run(&ebpf.RunOptions{Context: make([]byte, 8)}); err != nil {
		return Counters{}, fmt.Errorf("run read_drops: %w", err)
	}
	var d listentraceListenerDrops
	if err := t.objs.Drops.Lookup(uint32(0), &d); err != nil {
		return Counters{}, fmt.Errorf("read listener drops: %w", err)
	}
	var mx []uint64
	if err := t.objs.WaitMax.Lookup(uint32(0), &mx); err != nil {
		return Counters{}, fmt.Errorf("read longest wait: %w", err)
	}
	// A wait recorded between the lookup and this update is lost to the
	// max (it is still in the histogram): a race of microseconds.
	if err := t.objs.WaitMax.Put(uint32(0), t.zeroMax); err != nil {
		return Counters{}, fmt.Errorf("reset longest wait: %w", err)
	}
	return t.sum(per, d, mx), nil
}

// sum turns the maps' per-CPU values into Counters, and asks for a walk
// when the listeners must be learned again.
func (t *Tracer) sum(per []listentracePortStats, d listentraceListenerDrops, mx []uint64) Counters {
	var c Counters
	var est int64
	for i := range per {
		est += per[i].Established
		c.SYNs += per[i].Syns
		c.SYNsFull += per[i].SynsFull
		c.Accepts += per[i].Accepts
		c.WaitSumUS += per[i].WaitSumUs
		for b := range c.Hist {
			c.Hist[b] += per[i].Hist[b]
		}
	}
	c.Listeners = d.Listeners
	c.Drops = d.Drops
	c.Established = uint64(max(est, 0))
	c.SynRecv = d.SynQueue
	if d.Listeners == 0 || d.Pruned > 0 {
		// Valkey restarted (a new listening socket) or is down, or one
		// of its listeners closed (pruned; another may have reused an
		// address and kept the count above 0): look for its listeners
		// again, at most once per relearnGap.
		t.askRelearn()
	}
	var m uint64
	for _, v := range mx {
		m = max(m, v)
	}
	c.MaxWait = time.Duration(m)
	return c
}

// Counts returns the port's ESTABLISHED sockets as the programs keep
// them, and its SYN_RECV ones: the half-open connections in the listeners'
// SYN queues (full sockets in SYN_RECV, which exist for microseconds, or
// until the final ACK under TCP Fast Open, are not included). It reads two small maps and never walks the
// socket hash; Read is not affected.
func (t *Tracer) Counts() (established, synRecv uint64, err error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return 0, 0, ErrClosed
	}
	var per []listentracePortStats
	if err := t.objs.Stats.Lookup(uint32(0), &per); err != nil {
		return 0, 0, fmt.Errorf("read port stats: %w", err)
	}
	var est int64
	for i := range per {
		est += per[i].Established
	}
	if _, err := t.objs.ReadDrops.Run(&ebpf.RunOptions{Context: make([]byte, 8)}); err != nil {
		return 0, 0, fmt.Errorf("run read_drops: %w", err)
	}
	var d listentraceListenerDrops
	if err := t.objs.Drops.Lookup(uint32(0), &d); err != nil {
		return 0, 0, fmt.Errorf("read listener drops: %w", err)
	}
	if d.Pruned > 0 {
		t.askRelearn()
	}
	if d.Listeners == 0 {
		t.askRelearn()
		return 0, 0, ErrNoListener
	}
	return uint64(max(est, 0)), d.SynQueue, nil
}

// Close detaches the programs and frees the maps. It waits for a Read,
// Counts or walk in flight; those called after it return ErrClosed.
func (t *Tracer) Close() error {
	var errs []error
	t.close.Do(func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.closed = true
		close(t.done)
		if t.rd != nil {
			errs = append(errs, t.rd.Close())
		}
		for _, l := range t.links {
			errs = append(errs, l.Close())
		}
		t.objs.Close()
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close BPF programs: %w", err)
	}
	return nil
}
