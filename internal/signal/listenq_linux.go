//go:build linux

package signal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

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
	// pollTimeout bounds one fast poll.
	pollTimeout = time.Second
)

// diagConn is one NETLINK_SOCK_DIAG socket in the target's namespace with
// its own reusable buffers: a dump allocates nothing, so polling at 100 Hz
// puts no load on the garbage collector.
type diagConn struct {
	nl  *netlink.Conn
	rc  syscall.RawConn
	req []byte
	buf []byte
	seq uint32

	// Results of the last raw read/write, set by the method values
	// below (kept in fields so the hot path builds no closures).
	n       int
	errno   error
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
}

// dialDiag opens a sock_diag socket inside the namespace at nsPath ("" =
// stormguard's own). The socket stays bound to that namespace for its life.
func dialDiag(nsPath string) (*diagConn, error) {
	cfg := &netlink.Config{}
	if nsPath != "" {
		f, err := os.Open(nsPath)
		if err != nil {
			return nil, fmt.Errorf("open network namespace: %w", err)
		}
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	nl, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, cfg)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag socket: %w", err)
	}
	rc, err := nl.SyscallConn()
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	d := &diagConn{nl: nl, rc: rc, req: make([]byte, 0, diagRequestLen), buf: make([]byte, diagBufLen)}
	d.readFn = d.read
	d.writeFn = d.write
	return d, nil
}

func (d *diagConn) close() error { return d.nl.Close() }

// write sends d.req; it runs under RawConn.Write.
func (d *diagConn) write(fd uintptr) bool {
	_, d.errno = unix.Write(int(fd), d.req)
	return d.errno != unix.EAGAIN
}

// read receives one datagram into d.buf; it runs under RawConn.Read.
// MSG_TRUNC makes the kernel report the datagram's real length, so a too
// small buffer is detected instead of silently cutting a message.
func (d *diagConn) read(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&d.buf[0])), uintptr(len(d.buf)), unix.MSG_TRUNC, 0, 0)
	d.n, d.errno = int(n), nil
	if e != 0 {
		d.errno = e
	}
	return e != unix.EAGAIN
}

// setDeadline bounds the socket's next reads and writes.
func (d *diagConn) setDeadline(t time.Time) error {
	if err := d.nl.SetDeadline(t); err != nil {
		return fmt.Errorf("set sock_diag deadline: %w", err)
	}
	return nil
}

// dump runs one SOCK_DIAG_BY_FAMILY dump and adds each reply to t. The
// replies are decoded datagram by datagram straight from the buffer, never
// retained. After an error the socket may hold the rest of the dump, so the
// caller must close it.
func (d *diagConn) dump(family uint8, states uint32, t *diagTally) error {
	d.seq++
	d.req = appendDiagRequest(d.req[:0], family, states, t.Port, d.seq)
	if err := d.rc.Write(d.writeFn); err != nil {
		return fmt.Errorf("send dump request: %w", err)
	}
	if d.errno != nil {
		return fmt.Errorf("send dump request: %w", d.errno)
	}
	for {
		if err := d.rc.Read(d.readFn); err != nil {
			return fmt.Errorf("receive dump: %w", err)
		}
		if d.errno != nil {
			return fmt.Errorf("receive dump: %w", d.errno)
		}
		if d.n > len(d.buf) {
			return fmt.Errorf("receive dump: datagram of %d bytes exceeds %d-byte buffer", d.n, len(d.buf))
		}
		done, err := decodeDiagDump(d.buf[:d.n], d.seq, t)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
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
	if err := d.rc.Write(d.writeFn); err != nil {
		return fmt.Errorf("send lookup: %w", err)
	}
	if d.errno != nil {
		return fmt.Errorf("send lookup: %w", d.errno)
	}
	var firstErr error
	for i := range ids {
		if err := d.rc.Read(d.readFn); err != nil {
			return fmt.Errorf("receive lookup: %w", err)
		}
		if d.errno != nil {
			return fmt.Errorf("receive lookup: %w", d.errno)
		}
		before := t.Sockets
		_, err := decodeDiagDump(d.buf[:min(d.n, len(d.buf))], first+uint32(i), t)
		if err == nil && t.Sockets != before+1 {
			err = fmt.Errorf("%w: lookup reply without a socket", errDiagMalformed)
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("look up listener %d: %w", i, err)
		}
	}
	return firstErr
}

// dumpBoth runs the dump for IPv4 and IPv6. A kernel without IPv6 answers
// the AF_INET6 request with ENOENT (no inet6_diag handler); that is no IPv6
// socket, not a failure.
func (d *diagConn) dumpBoth(states uint32, t *diagTally) error {
	if err := d.dump(afInet, states, t); err != nil {
		return fmt.Errorf("IPv4: %w", err)
	}
	if err := d.dump(afInet6, states, t); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EAFNOSUPPORT) {
			return nil
		}
		return fmt.Errorf("IPv6: %w", err)
	}
	return nil
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
	// known is how many listeners the poller looks up; Collect sets
	// relearn when its own dump finds a different number.
	known   atomic.Int64
	relearn atomic.Bool
	// lookups and dumps count the poller's polls by kind (tests and
	// benchmarks check that lookups do the bulk of the work).
	lookups, dumps, failures atomic.Uint64

	mu         sync.Mutex // guards coll, collDialed and collErr (Collect)
	coll       *diagConn
	collDialed time.Time
	collErr    error // why the last dial failed, repeated until the next try

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func openListenq(ctx context.Context, o Options) (sample.Source, error) {
	p := o.Target.Port()
	if p <= 0 || p > 65535 {
		return nil, fmt.Errorf("listen queue: port %d out of range", p)
	}
	every := o.ListenPoll
	if every == 0 {
		every = defaultListenPoll
	}
	l := &listenq{port: uint16(p), netns: o.Target.NetNS, every: every, log: o.logger().With("source", "listenq", "target", o.Target.Name()), done: make(chan struct{})}
	// The first dial happens here so a permission problem shows at once
	// in the log; a failure is not fatal (the namespace may come later):
	// Collect and the poller redial.
	if c, err := dialDiag(l.netns); err != nil {
		l.log.Debug("sock_diag socket not ready", "err", err)
	} else {
		l.coll, l.collDialed = c, time.Now()
	}
	pctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	if every < 0 {
		close(l.done) // fast poller disabled: Collect's own reads only
		return l, nil
	}
	go l.runPoller(pctx)
	return l, nil
}

func (l *listenq) Name() string { return "listenq" }

// Close stops the poller and closes both sockets. It is safe to call twice.
func (l *listenq) Close() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		<-l.done
		if l.poll != nil {
			err = l.poll.close()
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
	})
	return err
}

// runPoller reads the accept queue every l.every until ctx ends and keeps the
// interval's peak in l.peak. A time.Ticker drops ticks it could not deliver,
// so a descheduled poller catches up with one poll, not a burst.
//
// Polls are as cheap as the kernel allows: a LISTEN dump (which still scans
// every bucket of the listening hash) learns the listeners once a second,
// and the polls in between look each one up directly by address and cookie,
// all in one request. SO_REUSEPORT groups, which a lookup cannot tell apart,
// are always dumped.
func (l *listenq) runPoller(ctx context.Context) {
	defer close(l.done)
	tk := time.NewTicker(l.every)
	defer tk.Stop()
	var (
		t         diagTally
		ids       []listenerID // reused: no allocation per poll
		useExact  bool
		learnedAt time.Time
		deadline  time.Time
	)
	failing := false // log transitions only, not 100 lines a second
	fail := func(err error) {
		if !failing {
			l.log.Warn("accept-queue poll failed", "err", err)
		}
		failing = true
		useExact = false
		l.failures.Add(1)
		l.peak.fail(err)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		if l.poll == nil {
			if time.Since(l.pollDialed) < redialEvery {
				continue
			}
			l.pollDialed = time.Now()
			c, err := dialDiag(l.netns)
			if err != nil {
				fail(err)
				continue
			}
			l.poll = c
			deadline = time.Time{}
		}
		now := time.Now()
		// Re-arming the deadline timers costs about as much as a lookup,
		// so a poll's deadline is renewed only twice a second.
		if deadline.Sub(now) < pollTimeout/2 {
			deadline = now.Add(pollTimeout)
			if err := l.poll.setDeadline(deadline); err != nil {
				fail(err)
				l.poll.close()
				l.poll = nil
				continue
			}
		}
		if l.relearn.Swap(false) || now.Sub(learnedAt) >= relearnEvery {
			useExact = false
		}
		var err error
		if useExact {
			t = diagTally{Port: l.port}
			err = l.poll.exact(ids, &t)
			l.lookups.Add(1)
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESTALE) {
				useExact = false // a listener went or was replaced
			}
		}
		if !useExact {
			t = diagTally{Port: l.port, KeepIDs: true, IDs: ids[:0]}
			err = l.poll.dumpBoth(statesListen, &t)
			l.dumps.Add(1)
			ids, learnedAt = t.IDs, now
			useExact = err == nil && len(ids) > 0 && uniqueIDs(ids)
			l.known.Store(int64(len(ids)))
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
	l.coll = c
	return c, nil
}

// Collect reads the accept queue now, takes the poller's interval peak, and
// counts SYN_RECV and ESTABLISHED sockets on the port. The last two walk the
// whole established hash, so they run here, once per sample, never in the
// fast poller.
//
// No listening socket on the port (Valkey restarting, wrong port) is reported
// as unavailable with reason "no listening socket on port N": Listen is still
// filled with Sockets 0 and nil depth and limit (DepthMax keeps a peak the
// poller saw before the socket went), and SynRecv and Established are still
// counted, since connections outlive their listener.
func (l *listenq) Collect(ctx context.Context, s *sample.Sample) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(pollTimeout)
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
		return Classify("listen queue: "+what, err)
	}

	if err := c.setDeadline(deadline); err != nil {
		return fail("sock_diag", err)
	}
	lt := diagTally{Port: l.port}
	if err := c.dumpBoth(statesListen, &lt); err != nil {
		return fail("LISTEN dump", err)
	}
	if l.known.Load() != int64(lt.Sockets) {
		l.relearn.Store(true)
	}
	pk := l.peak.take()
	ls := &sample.Listen{Sockets: lt.Sockets, Polls: pk.Polls + 1}
	if lt.Sockets > 0 {
		ls.Depth, ls.Limit = sample.U64(lt.FullDepth), sample.U64(lt.FullLimit)
		ls.DepthTotal, ls.LimitTotal = sample.U64(lt.DepthSum), sample.U64(lt.LimitSum)
		ls.DepthMax = sample.U64(max(lt.FullDepth, pk.Depth))
	} else if pk.Seen {
		ls.DepthMax = sample.U64(pk.Depth)
	}
	s.Listen = ls

	// SYN_RECV and ESTABLISHED come from one dump per family: each dump
	// walks the whole established hash (262,144 buckets on an ordinary
	// host, empty or not), so asking once for both states halves the
	// cost. Request sockets report TCP_SYN_RECV.
	et := diagTally{Port: l.port}
	if err := c.dumpBoth(statesSynRecv|statesEstablished, &et); err != nil {
		return fail("SYN_RECV/ESTABLISHED dump", err)
	}
	s.SynRecv = sample.U64(uint64(et.States[tcpSynRecv] + et.States[tcpNewSynRecv]))
	s.Established = sample.U64(uint64(et.States[tcpEstablished]))

	if lt.Sockets == 0 {
		return Unavailablef("no listening socket on port %d", l.port)
	}
	return nil
}
