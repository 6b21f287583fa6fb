//go:build linux

package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sample"
)

const (
	// defaultListenPoll is the fast poller's period: 100 Hz.
	defaultListenPoll = 10 * time.Millisecond
	// diagBufLen is the receive buffer. The kernel sizes dump datagrams
	// by the largest buffer a reader passed, capped at 32 KiB
	// (netlink_recvmsg), and never fills more than it allocated, so
	// 64 KiB can never truncate.
	diagBufLen = 64 << 10
	// redialEvery bounds how often a broken or missing socket is re-made
	// (a namespace that is gone must not be reopened at 100 Hz).
	redialEvery = time.Second
	// relearnEvery is how often the fast poller dumps the listening
	// sockets again instead of looking up the ones it knows, so a
	// listener added next to the known ones is picked up.
	relearnEvery = time.Second
	// collectTimeout bounds a Collect whose context has no deadline.
	collectTimeout = time.Second
	// countBudget is the share of one core the SYN_RECV/ESTABLISHED
	// counts may use on average. Each count walks the kernel's whole
	// established hash and costs ~0.3 ms on a quiet host but ~20 ms with
	// 20,000 connections on the port (docs/benchmarks.md): counting at
	// every sample would then cost nearly as much as running the two
	// `ss` commands an operator would use.
	// Within the budget a cheap count still runs at every sample (0.3 ms
	// allows one every 150 ms); an expensive one is spaced out and the
	// samples in between repeat its result.
	countBudget = 0.002
	// countTimeout bounds one SYN_RECV/ESTABLISHED count (20,000
	// connections take ~20–30 ms); past it the count is abandoned with its
	// socket and retried within the budget.
	countTimeout = 2 * time.Second
	// countMinWait is the shortest wait for a count worth making a
	// sample do (see Collect): a shorter one is lost in a loaded
	// machine's scheduling delays.
	countMinWait = 5 * time.Millisecond
	// countMaxAge bounds how old repeated counts get: past it, the next
	// sample counts again even if that exceeds the budget (only a count
	// costing over 60 ms, i.e. far more than 20,000 sockets, gets there).
	countMaxAge = 30 * time.Second
)

// diagConn is one NETLINK_SOCK_DIAG socket in the target's namespace with
// its own reusable buffers: a dump allocates nothing, so polling at 100 Hz
// puts no load on the garbage collector.
//
// The socket is used with plain system calls, outside Go's network poller:
// sock_diag answers inside the sending system call (a lookup's reply, or a
// dump's first datagram, is queued before sendmsg returns) and makes each
// further dump datagram inside the recvmsg that asks for it, so a read with
// MSG_DONTWAIT never has to wait. That spares every poll the poller's
// epoll registration, deadline timers and goroutine parking.
type diagConn struct {
	fd  int
	req []byte
	buf []byte
	seq uint32
	// compat is set while the kernel serves TCPDIAG_GETSOCK dumps (one
	// walk for both families); cleared for good on the first refusal.
	compat bool
	// raw makes the socket's system calls raw (RawSyscall): the Go
	// runtime is not told about them. Any ordinary system call made
	// while every P is idle wakes the runtime's sysmon thread, so at
	// 100 Hz that doubles the poller's wake-ups; a raw call does not.
	// Only for the poller and Collect's LISTEN dumps, whose calls
	// return at once: a lookup or a LISTEN dump is answered in
	// microseconds and reads never wait (kernels before 6.10 serialise
	// sock_diag requests on a mutex, so a send may wait there for
	// another reader's dump datagram). Never for the counting dumps
	// (runCount's socket), which can spend milliseconds in one call.
	raw bool
}

// dialDiag opens a sock_diag socket inside the namespace at nsPath ("" =
// stormguard's own). The socket stays bound to that namespace for its life.
func dialDiag(nsPath string) (*diagConn, error) {
	fd := -1
	err := netns.Do(nsPath, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open sock_diag socket: %w", err)
	}
	return &diagConn{fd: fd, req: make([]byte, 0, compatRequestLen), buf: make([]byte, diagBufLen), compat: true}, nil
}

func (d *diagConn) close() error {
	if err := unix.Close(d.fd); err != nil {
		return fmt.Errorf("close sock_diag socket: %w", err)
	}
	return nil
}

// syscall makes one system call on the socket: a raw one for the poller
// (see diagConn.raw), an ordinary one otherwise.
func (d *diagConn) syscall(trap, a1, a2, a3, a4 uintptr) (uintptr, unix.Errno) {
	var r uintptr
	var e unix.Errno
	if d.raw {
		r, _, e = unix.RawSyscall6(trap, uintptr(d.fd), a1, a2, a3, a4, 0)
	} else {
		r, _, e = unix.Syscall6(trap, uintptr(d.fd), a1, a2, a3, a4, 0)
	}
	return r, e
}

// send writes d.req, which holds one or more requests.
func (d *diagConn) send() error {
	for {
		_, e := d.syscall(unix.SYS_SENDTO, uintptr(unsafe.Pointer(&d.req[0])), uintptr(len(d.req)), 0, 0)
		if e == 0 {
			return nil
		}
		if e != unix.EINTR {
			return e
		}
	}
}

// errPeerLimit ends an attribution dump that reached its limit; the rest
// of the reply is left in the socket, which the caller closes.
var errPeerLimit = errors.New("peer limit reached")

// recv reads one datagram into d.buf and returns its length. MSG_TRUNC
// makes the kernel report the datagram's real length, so a too small buffer
// is detected instead of silently cutting a message; MSG_DONTWAIT turns a
// reply that is not there (which sock_diag never does) into an error
// instead of a hang.
func (d *diagConn) recv() (int, error) {
	for {
		n, e := d.syscall(unix.SYS_RECVFROM, uintptr(unsafe.Pointer(&d.buf[0])), uintptr(len(d.buf)), unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			return 0, fmt.Errorf("%w: reply missing", errDiagMalformed)
		case e != 0:
			return 0, e
		case int(n) > len(d.buf):
			return 0, fmt.Errorf("datagram of %d bytes exceeds %d-byte buffer", n, len(d.buf))
		}
		return int(n), nil
	}
}

// run sends d.req (one dump request with sequence number d.seq) and adds
// every reply to t. The replies are decoded datagram by datagram straight
// from the buffer, never retained. A zero deadline means none; it is
// checked between datagrams (each is at most 32 KiB of work). After an
// error the socket may hold the rest of the dump, so the caller must close
// it.
func (d *diagConn) run(t *diagTally, deadline time.Time) error {
	if err := d.send(); err != nil {
		return fmt.Errorf("send dump request: %w", err)
	}
	for {
		n, err := d.recv()
		if err != nil {
			return fmt.Errorf("receive dump: %w", err)
		}
		done, err := decodeDiagDump(d.buf[:n], d.seq, t)
		if err != nil || done {
			return err
		}
		if t.peersFull() {
			return errPeerLimit
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return fmt.Errorf("receive dump: %w", context.DeadlineExceeded)
		}
	}
}

// dump adds to t every TCP socket in the state mask states whose local port
// is t.Port, IPv4 and IPv6. It asks with one TCPDIAG_GETSOCK dump (one walk
// of the tables) and falls back to one SOCK_DIAG_BY_FAMILY dump per family
// if the kernel refuses that request. A kernel without IPv6 answers the
// AF_INET6 request with ENOENT (no inet6_diag handler); that is no IPv6
// socket, not a failure.
func (d *diagConn) dump(states uint32, t *diagTally, deadline time.Time) error {
	if d.compat {
		d.seq++
		d.req = appendCompatRequest(d.req[:0], states, t.Port, d.seq)
		before := *t
		err := d.run(t, deadline)
		refused := errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)
		if !refused || t.Sockets != before.Sockets || t.Skipped != before.Skipped {
			return err
		}
		// Refused before any reply (EINVAL, EOPNOTSUPP: a kernel that
		// dropped the old interface): ask per family from now on.
		d.compat = false
		*t = before
	}
	for _, fam := range [...]uint8{afInet, afInet6} {
		d.seq++
		d.req = appendDiagRequest(d.req[:0], fam, states, t.Port, d.seq)
		if err := d.run(t, deadline); err != nil {
			if fam == afInet6 && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EAFNOSUPPORT)) {
				return nil
			}
			return fmt.Errorf("family %d: %w", fam, err)
		}
	}
	return nil
}

// exact looks up each listener of ids with one batched request (one
// sendmsg, one datagram back per listener) and adds them to t. Every reply is
// read even after an error, so the socket is clean for the next request. An
// error unwrapping to ENOENT or ESTALE means a listener went away or was
// replaced: the caller should learn the listeners again with a dump.
func (d *diagConn) exact(ids []listenerID, t *diagTally) error {
	d.req = d.req[:0]
	first := d.seq + 1
	for _, id := range ids {
		d.seq++
		d.req = appendExactRequest(d.req, id, t.Port, d.seq)
	}
	if err := d.send(); err != nil {
		return fmt.Errorf("send lookup: %w", err)
	}
	var firstErr error
	for i := range ids {
		n, err := d.recv()
		if err != nil {
			return fmt.Errorf("receive lookup: %w", err)
		}
		before := t.Sockets
		_, err = decodeDiagDump(d.buf[:n], first+uint32(i), t)
		if err == nil && t.Sockets != before+1 {
			err = fmt.Errorf("%w: lookup reply without a socket", errDiagMalformed)
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("look up listener %d: %w", i, err)
		}
	}
	return firstErr
}

// listenerReader reads a port's listening sockets as cheaply as the kernel
// allows. A LISTEN dump scans every bucket of the host's listening hash
// (shared by all namespaces), which is most of a dump's cost; a direct
// lookup of a known listener by address and cookie costs one hash probe.
// So the reader dumps to learn the listeners, at most relearnEvery apart,
// and in between looks up the ones it knows, all in one request. It dumps
// again at once when a lookup finds a listener gone or replaced, when the
// caller says the set may have changed, and always for SO_REUSEPORT groups
// (which a lookup cannot tell apart). A listener added beside the known
// ones is thus seen within relearnEvery. The zero value dumps first.
type listenerReader struct {
	ids       []listenerID // reused: no allocation per read
	useExact  bool
	learnedAt time.Time
}

// read returns the port's listeners read on c at now, and whether that took
// a dump. After an error the caller closes c and calls forget.
func (r *listenerReader) read(c *diagConn, port uint16, now time.Time, relearn bool, deadline time.Time) (t diagTally, dumped bool, err error) {
	if relearn || now.Sub(r.learnedAt) >= relearnEvery {
		r.useExact = false
	}
	if r.useExact {
		t = diagTally{Port: port}
		err = c.exact(r.ids, &t)
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESTALE) {
			return t, false, err
		}
		// A listener went or was replaced: learn them again.
		r.useExact = false
	}
	t = diagTally{Port: port, KeepIDs: true, IDs: r.ids[:0]}
	err = c.dump(statesListen, &t, deadline)
	r.ids, r.learnedAt = t.IDs, now
	r.useExact = err == nil && len(r.ids) > 0 && uniqueIDs(r.ids)
	return t, true, err
}

// forget makes the next read dump (after a failure, on a new socket).
func (r *listenerReader) forget() { r.useExact = false }

// threadCPU returns the CPU time the calling OS thread has used. The kernel
// does a dump's work inside the reading thread's system calls, so two
// readings around a dump on a locked thread give its full cost.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// listenq is the accept-queue source of one target. It keeps two sock_diag
// sockets: one for the fast poller, one for Collect, so a slow ESTABLISHED
// dump never delays the poller and an aborted dump never corrupts the other.
type listenq struct {
	port  uint16
	netns string
	every time.Duration
	log   *slog.Logger

	peak listenPeak

	// poll is owned by the poller goroutine.
	poll       *diagConn
	pollDialed time.Time
	// tick is the poller's timerfd; Close closes it to end the poller,
	// setting stopping first so the poller knows the error it then gets
	// (os.ErrClosed, or poll's "use of closed file" from a RawConn read)
	// is a shutdown, not a failure.
	tick     *os.File
	stopping atomic.Bool
	// known is how many listeners the poller looks up; Collect sets
	// relearn when its own dump finds a different number.
	known   atomic.Int64
	relearn atomic.Bool
	// lookups and dumps count the poller's polls by kind (tests and
	// benchmarks check that lookups do the bulk of the work).
	lookups, dumps, failures atomic.Uint64

	mu         sync.Mutex // guards everything below (Collect)
	coll       *diagConn
	collDialed time.Time
	collErr    error // why the last dial failed, repeated until the next try
	// collLR reads the listeners for Collect as the poller's does for
	// the poller (lookups, a dump at most every relearnEvery).
	collLR listenerReader

	// The SYN_RECV/ESTABLISHED count runs in a goroutine of its own, on
	// its own sock_diag socket (cnt, owned by that goroutine), so a slow
	// walk of the established hash never costs Collect its deadline nor
	// the sample its listen.* part. cmu guards everything below.
	cmu sync.Mutex
	// running is non-nil while a count runs and is closed when it ends: a
	// count is never started while another is still running.
	running chan struct{}
	cnt     *diagConn
	// The last count, repeated by the samples until nextCount (see
	// countBudget).
	counted              bool
	synRecv, established uint64
	// abandoned counts CLOSE_WAIT children no process owns: queued
	// connections whose client already closed (listen.abandoned).
	abandoned uint64
	// abandonedCounted: abandoned holds a count (a full one, or with the
	// kernel counts one of CLOSE_WAIT alone).
	abandonedCounted bool
	nextCount        time.Time
	countedAt        time.Time
	countFailing     bool
	// lastTook is how long the last count took (wall time).
	lastTook time.Duration
	// budget is countBudget; tests set 0 to count at every sample.
	budget float64
	// counts is how many counts ran and countCPU their total CPU time
	// (benchmarks report them).
	counts   int
	countCPU time.Duration

	// kernelCounts, when set (the eBPF programs are attached; see
	// useKernelCounts), gives the SYN_RECV/ESTABLISHED counts the
	// programs keep in the kernel: a sample then never walks the hash.
	// Set once by Open before the first Collect.
	kernelCounts func() (established, synRecv uint64, err error)
	// kernelFailing logs the kernel counts' failures once (under mu).
	kernelFailing bool

	done chan struct{}
	once sync.Once
}

// useKernelCounts implements kernelCountUser.
func (l *listenq) useKernelCounts(f func() (established, synRecv uint64, err error)) {
	l.kernelCounts = f
}

func openListenq(ctx context.Context, o Options) (sample.Source, error) {
	p := o.Target.Port()
	if p <= 0 || p > 65535 {
		return nil, fmt.Errorf("listen queue: port %d out of range", p)
	}
	every := o.ListenPoll
	if every == 0 {
		every = defaultListenPoll
		if o.Interval > 0 && o.Interval <= every {
			// Samples come at least as often as the poller would
			// poll: they share one clock, each sample's own read is
			// the interval's peak (listen.polls 1), and no second
			// 100 Hz wake-up runs beside the sampler's.
			every = -1
		}
	}
	l := &listenq{port: uint16(p), netns: o.Target.NetNS, every: every, budget: countBudget,
		log: o.logger().With("source", "listenq", "target", o.Target.Name()), done: make(chan struct{})}
	l.peak.wake = make(chan struct{}, 1)
	// The first dial happens here so a permission problem shows at once
	// in the log; a failure is not fatal (the namespace may come later):
	// Collect and the poller redial.
	if c, err := dialDiag(l.netns); err != nil {
		l.log.Debug("sock_diag socket not ready", "err", err)
	} else {
		c.raw = true // LISTEN dumps only (see collConn)
		l.coll, l.collDialed = c, time.Now()
	}
	if every < 0 {
		close(l.done) // fast poller disabled: Collect's own reads only
		return l, nil
	}
	tick, err := newTickFile(every)
	if err != nil {
		if l.coll != nil {
			l.coll.close()
		}
		return nil, fmt.Errorf("listen queue: poller clock: %w", err)
	}
	l.tick = tick
	go l.runPoller()
	return l, nil
}

func (l *listenq) Name() string { return "listenq" }

// Prompt implements sample.Prompt: kernel state only, read in about a
// millisecond, so a wake-up's early sample waits for it.
func (*listenq) Prompt() bool { return true }

// Close stops the poller and closes both sockets. It is safe to call twice.
func (l *listenq) Close() error {
	var err error
	l.once.Do(func() {
		if l.tick != nil {
			// The poller's pending read returns an error.
			l.stopping.Store(true)
			if e := l.tick.Close(); e != nil {
				err = fmt.Errorf("stop accept-queue poller: %w", e)
			}
		}
		<-l.done
		if l.poll != nil {
			if e := l.poll.close(); e != nil && err == nil {
				err = e
			}
			l.poll = nil
		}
		l.mu.Lock()
		if l.coll != nil {
			if e := l.coll.close(); e != nil && err == nil {
				err = e
			}
			l.coll = nil
		}
		l.mu.Unlock()
		// A running count ends by itself within countTimeout.
		l.cmu.Lock()
		ch := l.running
		l.cmu.Unlock()
		if ch != nil {
			<-ch
		}
		l.cmu.Lock()
		if l.cnt != nil {
			l.cnt.close()
			l.cnt = nil
		}
		l.cmu.Unlock()
	})
	return err
}

// newTickFile returns a timerfd that becomes readable every period, as an
// *os.File so that waiting for it parks the goroutine in Go's network
// poller. A kernel timer, unlike a Go timer, does not make the runtime's
// sysmon thread wake up for it as well, and a read returns however many
// periods passed, so a poller that fell behind polls once, not in a burst.
func newTickFile(period time.Duration) (*os.File, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create timerfd: %w", err)
	}
	ts := unix.NsecToTimespec(int64(period))
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("arm timerfd: %w", err)
	}
	return os.NewFile(uintptr(fd), "listenq-timerfd"), nil
}

// tickReader returns the function that reads a timerfd for RawConn.Read:
// one raw read(2) (see diagConn.raw), false when nothing is due yet so that
// the goroutine parks in the network poller.
func tickReader() func(fd uintptr) bool {
	var expirations [8]byte
	return func(fd uintptr) bool {
		for {
			_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&expirations[0])), uintptr(len(expirations)))
			if e != unix.EINTR {
				return e != unix.EAGAIN
			}
		}
	}
}

// runPoller reads the accept queue every l.every until Close and keeps the
// interval's peak in l.peak.
//
// Waking up 100 times a second is most of the poller's cost, so each period
// wakes one thread only: the poller waits on a timerfd (see newTickFile)
// rather than a time.Ticker, and makes nothing but raw system calls, which
// return at once (see diagConn.raw). Go timers and ordinary system calls
// each also wake the runtime's sysmon thread (docs/benchmarks.md counts the
// wake-ups).
//
// Polls are as cheap as the kernel allows: a LISTEN dump (which still scans
// every bucket of the listening hash) learns the listeners once a second,
// and the polls in between look each one up directly by address and cookie,
// all in one request. SO_REUSEPORT groups, which a lookup cannot tell apart,
// are always dumped.
func (l *listenq) runPoller() {
	defer close(l.done)
	// The timerfd is read with a raw system call for the same reason as
	// the poller's socket (diagConn.raw); RawConn.Read parks the goroutine
	// in the network poller when it would block.
	tick, err := l.tick.SyscallConn()
	if err != nil {
		if !l.stopping.Load() {
			l.log.Error("accept-queue poller clock failed; poller stopped", "err", err)
		}
		return
	}
	readTick := tickReader()
	var (
		t  diagTally
		lr listenerReader // the known listeners; reused: no allocation per poll
	)
	failing := false // log transitions only, not 100 lines a second
	fail := func(err error) {
		if !failing {
			l.log.Warn("accept-queue poll failed", "err", err)
		}
		failing = true
		lr.forget()
		l.failures.Add(1)
		l.peak.fail(err)
	}
	for {
		if err := tick.Read(readTick); err != nil {
			if !l.stopping.Load() && !errors.Is(err, os.ErrClosed) {
				l.log.Error("accept-queue poller clock failed; poller stopped", "err", err)
			}
			return
		}
		now := time.Now()
		if l.poll == nil {
			if now.Sub(l.pollDialed) < redialEvery {
				continue
			}
			l.pollDialed = now
			c, err := dialDiag(l.netns)
			if err != nil {
				fail(err)
				continue
			}
			c.raw = true
			l.poll = c
		}
		var dumped bool
		t, dumped, err = lr.read(l.poll, l.port, now, l.relearn.Swap(false), time.Time{})
		if dumped {
			l.dumps.Add(1)
			l.known.Store(int64(t.Sockets))
		} else {
			l.lookups.Add(1)
		}
		if err != nil {
			fail(err)
			l.poll.close()
			l.poll = nil
			continue
		}
		if failing {
			l.log.Info("accept-queue poller recovered")
			failing = false
		}
		l.peak.observe(&t)
	}
}

// Wake is the source's entry in Set.Wakes: it fires when the poller sees the accept
// queue at least half full, so the sampler samples at once.
func (l *listenq) Wake() <-chan struct{} { return l.peak.wake }

// WakeLevel: a half-full queue is filling, nothing dropped yet.
func (*listenq) WakeLevel() sample.WakeLevel { return sample.WakeFilling }

// collConn returns Collect's socket, dialling it if needed.
func (l *listenq) collConn() (*diagConn, error) {
	if l.coll != nil {
		return l.coll, nil
	}
	if l.collErr != nil && time.Since(l.collDialed) < redialEvery {
		return nil, l.collErr
	}
	l.collDialed = time.Now()
	c, err := dialDiag(l.netns)
	l.collErr = err
	if err != nil {
		return nil, err
	}
	// Collect's socket only makes LISTEN dumps (the listening hash, answered
	// at once; the counting dumps have a socket of their own), so its
	// calls are raw like the poller's (diagConn.raw): a calm sample with
	// eBPF on then makes no system call the Go runtime sees.
	c.raw = true
	l.coll = c
	return c, nil
}

// runCount counts the port's SYN_RECV, ESTABLISHED and unowned CLOSE_WAIT
// sockets (one dump) on the count
// socket, on a locked thread so that the thread's CPU clock gives the
// dump's full cost, records the result and spaces the next count by that
// cost (countSpacing), then closes done. Collect starts it and never
// starts another while it runs.
func (l *listenq) runCount(done chan struct{}, abandonedOnly bool) {
	start := time.Now()
	runtime.LockOSThread()
	c, err := l.countConn()
	var t diagTally
	var cost time.Duration
	if err == nil {
		t = diagTally{Port: l.port}
		states := uint32(statesSynRecv | statesEstablished | statesCloseWait)
		if abandonedOnly {
			states = statesCloseWait
		}
		c0 := threadCPU()
		err = c.dump(states, &t, start.Add(countTimeout))
		cost = threadCPU() - c0
	}
	runtime.UnlockOSThread()

	l.cmu.Lock()
	defer close(done)
	defer l.cmu.Unlock()
	l.running = nil
	l.lastTook = time.Since(start)
	l.counts++
	l.countCPU += cost
	if err != nil {
		// The socket may still hold the rest of the dump.
		if l.cnt != nil {
			l.cnt.close()
			l.cnt = nil
		}
		if !l.countFailing {
			l.log.Warn("SYN_RECV/ESTABLISHED count failed; samples repeat the last count", "err", err)
		}
		l.countFailing = true
		// Retry no sooner than a redial, and within the budget.
		l.nextCount = start.Add(max(redialEvery, countSpacing(cost, l.budget, countMaxAge)))
		return
	}
	l.countFailing = false
	// A child in CLOSE_WAIT without an owning socket file is still in the
	// accept queue: once a process accepts it, it has an inode, and once
	// that process closes it, it leaves CLOSE_WAIT (LAST_ACK).
	l.abandoned, l.abandonedCounted = uint64(t.Unowned[tcpCloseWait]), true
	if !abandonedOnly {
		l.counted, l.countedAt = true, start
		l.synRecv = uint64(t.States[tcpSynRecv] + t.States[tcpNewSynRecv])
		l.established = uint64(t.States[tcpEstablished])
	}
	l.nextCount = start.Add(countSpacing(cost, l.budget, countMaxAge))
}

// countIfDue starts a count in the background when one is due (see
// runCount) and waits for it a little: only for a count this sample
// started, at most a quarter of the time left (the rest is margin for a
// loaded machine's scheduling), and only when that is at least
// countMinWait and the previous count took less. At a short interval, or
// with a big established hash, samples never wait for a count at all.
func (l *listenq) countIfDue(ctx context.Context, deadline time.Time, abandonedOnly bool) {
	l.cmu.Lock()
	var started chan struct{}
	counted := l.counted
	if abandonedOnly {
		counted = l.abandonedCounted
	}
	if now := time.Now(); l.running == nil && (!counted || !now.Before(l.nextCount)) {
		l.running = make(chan struct{})
		started = l.running
		go l.runCount(started, abandonedOnly)
	}
	lastTook := l.lastTook
	l.cmu.Unlock()
	if started == nil {
		return
	}
	if wait := time.Until(deadline) / 4; wait >= countMinWait && lastTook < wait {
		tm := time.NewTimer(wait)
		select {
		case <-started:
		case <-tm.C:
		case <-ctx.Done():
		}
		tm.Stop()
	}
}

// abandonedWithKernelCounts gives listen.abandoned while the eBPF programs
// keep SYN_RECV and ESTABLISHED: an abandoned connection is a child still
// in an accept queue, so with every queue of the port empty (or no
// listener, which takes its queue along) it is exactly 0 and nothing is
// walked, as in every calm sample. With connections queued, a walk of the
// port's CLOSE_WAIT sockets alone counts them, in the background within
// the counts' budget like the walk it replaces; false (null) until the
// first one ends.
func (l *listenq) abandonedWithKernelCounts(ctx context.Context, lt diagTally, deadline time.Time) (uint64, bool) {
	if lt.Sockets == 0 || lt.DepthSum == 0 {
		return 0, true
	}
	l.countIfDue(ctx, deadline, true)
	l.cmu.Lock()
	defer l.cmu.Unlock()
	if !l.abandonedCounted {
		return 0, false
	}
	return l.abandoned, true
}

// countConn returns the count goroutine's socket, dialling it if needed.
func (l *listenq) countConn() (*diagConn, error) {
	l.cmu.Lock()
	c := l.cnt
	l.cmu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := dialDiag(l.netns)
	if err != nil {
		return nil, err
	}
	l.cmu.Lock()
	l.cnt = c
	l.cmu.Unlock()
	return c, nil
}

// Collect reads the accept queue now, takes the poller's interval peak, and
// reports the SYN_RECV and ESTABLISHED counts for the port.
//
// The counts walk the kernel's whole established hash, so they never run in
// the fast poller, nor inside Collect's deadline: they run in the
// background (runCount), one at a time, as often as countBudget allows. A
// sample that does not get a fresh count repeats the last one (counts_age_ms
// says how old; at most countMaxAge plus one count) or, before the first
// count ends, leaves them null. With few sockets on the host the count
// ends within microseconds and every sample carries a fresh one; at any
// interval the accept-queue reading (listen.*) is never held up by it.
//
// No listening socket on the port (Valkey restarting, wrong port) is reported
// as unavailable with reason "no listening socket on port N": Listen is still
// filled with Sockets 0 and nil depth and limit (DepthMax keeps a peak the
// poller saw before the socket went), and SynRecv and Established are still
// reported, since connections outlive their listener.
// listenPart holds a sample's listen part and the values its pointers
// point to: one allocation per sample instead of one per value (at a
// 10 ms interval, 100 samples a second, each kept by the hub for ten
// minutes).
type listenPart struct {
	ls                                             sample.Listen
	depth, limit, depthTotal, limitTotal, depthMax uint64
	synRecv, established, abandoned                uint64
	countsAge                                      float64
}

func (l *listenq) Collect(ctx context.Context, s *sample.Sample) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(collectTimeout)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c, err := l.collConn()
	if err != nil {
		return Classify("listen queue: sock_diag", err)
	}
	fail := func(what string, err error) error {
		// The socket may still hold the rest of the dump.
		c.close()
		l.coll = nil
		l.collLR.forget()
		return Classify("listen queue: "+what, err)
	}

	lt, dumped, err := l.collLR.read(c, l.port, time.Now(), false, deadline)
	if err != nil {
		return fail("LISTEN read", err)
	}
	if dumped && l.known.Load() != int64(lt.Sockets) {
		l.relearn.Store(true)
	}
	pk := l.peak.take()
	// One allocation for the sample's part (every value is its own
	// pointer in the sample; see listenPart).
	v := &listenPart{ls: sample.Listen{Sockets: lt.Sockets, Polls: pk.Polls + 1}}
	ls := &v.ls
	if lt.Sockets > 0 {
		v.depth, v.limit, v.depthTotal, v.limitTotal = lt.FullDepth, lt.FullLimit, lt.DepthSum, lt.LimitSum
		v.depthMax = max(lt.FullDepth, pk.Depth)
		ls.Depth, ls.Limit, ls.DepthTotal, ls.LimitTotal, ls.DepthMax = &v.depth, &v.limit, &v.depthTotal, &v.limitTotal, &v.depthMax
	} else if pk.Seen {
		v.depthMax = pk.Depth
		ls.DepthMax = &v.depthMax
	}
	s.Listen = ls

	// With the eBPF programs attached, the kernel keeps the counts: two
	// map reads, no walk. While they cannot answer (no listener known
	// yet, Valkey restarting) the walk below stands in.
	if l.kernelCounts != nil {
		est, synRecv, err := l.kernelCounts()
		if err == nil {
			if l.kernelFailing {
				l.log.Info("SYN_RECV/ESTABLISHED counted in the kernel again")
				l.kernelFailing = false
			}
			v.synRecv, v.established = synRecv, est
			s.SynRecv, s.Established, s.CountsAgeMS = &v.synRecv, &v.established, &v.countsAge
			if n, ok := l.abandonedWithKernelCounts(ctx, lt, deadline); ok {
				v.abandoned = n
				ls.Abandoned = &v.abandoned
			}
			if lt.Sockets == 0 {
				return Unavailablef("no listening socket on port %d", l.port)
			}
			return nil
		}
		if !l.kernelFailing {
			l.log.Info("SYN_RECV/ESTABLISHED from the eBPF programs unavailable; walking the socket hash", "err", err)
			l.kernelFailing = true
		}
	}

	// SYN_RECV and ESTABLISHED come from one dump (request sockets report
	// TCP_SYN_RECV), counted by state while streaming, in the background:
	// when one is due it is started, and this sample may wait for it a
	// little. A count that takes longer (a full established hash at a
	// short interval) goes on by itself and a later sample reports it;
	// this one repeats the last. Only a count this sample started is waited for, at most a quarter
	// of the time left (the rest is margin for a loaded machine's
	// scheduling), and only when that is at least countMinWait and the
	// previous count took less: at a short interval, or with a big
	// established hash, samples never wait for a count at all.
	l.countIfDue(ctx, deadline, false)
	l.cmu.Lock()
	if l.counted {
		s.SynRecv, s.Established = sample.U64(l.synRecv), sample.U64(l.established)
		ls.Abandoned = sample.U64(l.abandoned)
		s.CountsAgeMS = sample.F64(float64(time.Since(l.countedAt).Microseconds()) / 1000)
	}
	l.cmu.Unlock()

	if lt.Sockets == 0 {
		return Unavailablef("no listening socket on port %d", l.port)
	}
	return nil
}
