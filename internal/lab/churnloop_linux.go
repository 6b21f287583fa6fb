//go:build linux

package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/backoff"
)

// The churn scenario's generator is an event loop, as valkey-benchmark's
// is: one OS thread, inside the server's namespace, owns every client's
// non-blocking socket and one epoll instance, and each client is a small
// state machine — socket, connect, write PING, read +PONG, close (a FIN:
// the client keeps the TIME_WAIT, as valkey-benchmark's does), and at
// once the next connection. The goroutine-per-client clients of the other
// scenarios spent ~40% more CPU per connection than valkey-benchmark, in
// Go's scheduler and poller rather than in the TCP calls (docs/benchmarks.md,
// "Generator connection rate"); on two shared cores that CPU came out of
// valkey-server's share, so the generator measured itself rather than the
// server. Here the Go runtime is only the thread's caller.
//
// It runs the same clients as rawClient does for churn: the immediate
// strategy's schedule after failures (with the warm-up's pacing), the
// connect and command timeouts, the same counts in the recorder, each
// instance's source address. TLS, a per-connection setup or client hosts
// need the goroutine clients (loopChurn is false).

// loopChurn reports whether this run's churn goes through churnLoop.
func (r *run) loopChurn() bool {
	return r.scenario.traits().churn && r.cfg.TLSConfig == nil && len(r.handshake()) == 0 &&
		len(r.hostDialers) == 0
}

// Client states of the loop.
const (
	chIdle       uint8 = iota // no socket; (re)connect at due
	chConnecting              // connect started, PING not fully written; gives up at due
	chReading                 // PING written, waiting for the reply; gives up at due
)

// churnClient is one client of the loop.
type churnClient struct {
	fd     int
	state  uint8
	off    int // bytes of the PING written
	n      int // bytes of the reply read
	id     int // the recorder's client id
	src    netip.Addr
	due    int64 // ns since the loop's base
	sent   time.Time
	sched  *backoff.Schedule
	everUp bool
	fails  int // failed starts during warm-up (warmupRetry)
	reply  [64]byte
}

// churnLoop is the state of one event loop.
type churnLoop struct {
	r       *run
	ep      int
	domain  int
	sa      unix.Sockaddr
	raddr   *net.TCPAddr
	clients []churnClient
	base    time.Time
	nextDue int64 // no client is due before this (ns since base)
	events  []unix.EpollEvent
}

// loopMaxWait bounds one epoll_wait, so that the end of the run is
// noticed within it.
const loopMaxWait = 20 * time.Millisecond

// churnLoop runs the fleet's clients on one event loop until ctx ends.
// An error means the loop could not start (or its epoll failed).
func (r *run) churnLoop(ctx context.Context) error {
	ap, err := resolve(ctx, "tcp", r.cfg.Target)
	if err != nil {
		return err
	}
	l := &churnLoop{r: r, domain: unix.AF_INET, raddr: net.TCPAddrFromAddrPort(ap), base: time.Now()}
	if a := ap.Addr(); a.Is4() || a.Is4In6() {
		l.sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	} else {
		l.domain = unix.AF_INET6
		l.sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	}
	pol, err := backoff.ByName(r.cfg.Strategy, r.cfg.Policy)
	if err != nil {
		return err
	}
	// Client id runs in instance k for id in [k·N/K, (k+1)·N/K), as
	// launch starts them, and connects from that instance's address.
	l.clients = make([]churnClient, r.cfg.Clients)
	id := 0
	for k := 0; k < r.cfg.Instances; k++ {
		var src netip.Addr
		if r.sources > 1 {
			src = sourceAddr(k % r.sources)
		}
		for hi := (k + 1) * r.cfg.Clients / r.cfg.Instances; id < hi; id++ {
			c := &l.clients[id]
			c.id, c.fd, c.src = id, -1, src
			c.sched, _ = backoff.NewSchedule(pol, nil) // validated in Config.Validate
			if r.cfg.Ramp > 0 {
				c.due = int64(float64(id) / r.cfg.Ramp * float64(time.Second))
			}
		}
	}
	l.events = make([]unix.EpollEvent, min(len(l.clients), 1024))

	// The thread stays in the server's namespace for the loop's life:
	// every socket(2) is made there.
	runtime.LockOSThread()
	leave, err := enterNetNS(r.cfg.NetNS)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer leave()
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	defer unix.Close(l.ep)
	defer l.closeAll()
	var stop atomic.Bool
	defer context.AfterFunc(ctx, func() { stop.Store(true) })()
	return l.run(&stop)
}

// enterNetNS moves the calling (locked) thread into the network namespace
// at nsPath ("" : stay) and returns how to leave it: back to the
// thread's own namespace, then unlocked. A thread that cannot go back
// stays locked and dies with its goroutine.
func enterNetNS(nsPath string) (func(), error) {
	if nsPath == "" {
		return runtime.UnlockOSThread, nil
	}
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open current network namespace: %w", err)
	}
	ns, err := os.Open(nsPath)
	if err != nil {
		orig.Close()
		return nil, fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	err = unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET)
	ns.Close()
	if err != nil {
		orig.Close()
		return nil, fmt.Errorf("enter network namespace %s: %w", nsPath, err)
	}
	return func() {
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		orig.Close()
	}, nil
}

func (l *churnLoop) run(stop *atomic.Bool) error {
	for !stop.Load() {
		wait := l.nextDue - int64(time.Since(l.base))
		ms := 0
		if wait > 0 {
			ms = int((min(time.Duration(wait), loopMaxWait) + time.Millisecond - 1) / time.Millisecond)
		}
		n, err := unix.EpollWait(l.ep, l.events, ms)
		if err != nil && err != unix.EINTR {
			return os.NewSyscallError("epoll_wait", err)
		}
		now := time.Now()
		mono := int64(now.Sub(l.base))
		for _, ev := range l.events[:max(n, 0)] {
			c := &l.clients[ev.Pad]
			if c.fd != int(ev.Fd) {
				continue
			}
			switch c.state {
			case chConnecting:
				l.write(c, now, mono)
			case chReading:
				if ev.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
					l.read(c, now, mono)
				}
			}
		}
		if mono >= l.nextDue {
			l.sweep(now, mono)
		}
	}
	return nil
}

// sweep starts the clients whose wait is over and fails those whose
// connect or PING ran out of time.
func (l *churnLoop) sweep(now time.Time, mono int64) {
	next := mono + int64(loopMaxWait)
	for i := range l.clients {
		c := &l.clients[i]
		if c.due <= mono {
			switch c.state {
			case chIdle:
				l.open(c, now, mono)
			case chConnecting:
				l.dialFailed(c, fmt.Errorf("connect: %w", os.ErrDeadlineExceeded), mono)
			case chReading:
				l.commandFailed(c, &net.OpError{Op: "read", Net: "tcp", Addr: l.raddr, Err: os.ErrDeadlineExceeded}, mono)
			}
		}
		next = min(next, c.due)
	}
	l.nextDue = next
}

// open starts client c's next connection: socket, bind to its source,
// a non-blocking connect, and the PING at once (on loopback the handshake
// has usually completed when connect(2) returns EINPROGRESS: the kernel
// processes the SYN-ACK before the call returns). Then the socket joins
// the epoll set, for the reply or, if the PING could not go yet, for the
// connect's end.
func (l *churnLoop) open(c *churnClient, now time.Time, mono int64) {
	l.r.rec.dial()
	fd, err := unix.Socket(l.domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.dialFailed(c, os.NewSyscallError("socket", err), mono)
		return
	}
	c.fd, c.off, c.n, c.state = fd, 0, 0, chConnecting
	if c.src.IsValid() {
		if err := bindSource(fd, c.src); err != nil {
			l.dialFailed(c, err, mono)
			return
		}
	}
	if err := unix.Connect(fd, l.sa); err != nil && err != unix.EINPROGRESS {
		l.dialFailed(c, os.NewSyscallError("connect", err), mono)
		return
	}
	l.setDue(c, mono+l.r.connectTimeout.Load())
	if !l.write(c, now, mono) {
		return // failed: closed and recorded
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd), Pad: int32(c.id)}
	if c.state == chConnecting {
		// Edge-triggered: the connect's end is one writable edge; a
		// writable socket afterwards must not wake the loop again.
		ev.Events |= unix.EPOLLOUT | unix.EPOLLET
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.dialFailed(c, os.NewSyscallError("epoll_ctl", err), mono)
	}
}

// write sends what is left of the PING. It returns false when the
// connection failed (closed and recorded).
func (l *churnLoop) write(c *churnClient, now time.Time, mono int64) bool {
	for c.off < len(pingCmd) {
		n, err := unix.Write(c.fd, pingCmd[c.off:])
		switch {
		case err == unix.EAGAIN:
			return true // not connected yet: wait for the writable edge
		case err == unix.EINTR:
			continue
		case err == unix.EPIPE || err == unix.ECONNRESET:
			// The connection was up and the server closed it.
			l.commandFailed(c, &net.OpError{Op: "write", Net: "tcp", Addr: l.raddr, Err: os.NewSyscallError("write", err)}, mono)
			return false
		case err != nil:
			// The connect's own error (refused, unreachable, timed out).
			l.dialFailed(c, os.NewSyscallError("connect", err), mono)
			return false
		}
		c.off += n
	}
	if c.state == chConnecting {
		c.state, c.sent = chReading, now
		l.setDue(c, mono+int64(l.r.cfg.CommandTimeout))
	}
	return true
}

// read takes what the server sent. A whole +PONG line completes the
// client's request: it closes and connects again at once.
func (l *churnLoop) read(c *churnClient, now time.Time, mono int64) {
	for {
		n, err := unix.Read(c.fd, c.reply[c.n:])
		switch {
		case err == unix.EAGAIN:
			return
		case err == unix.EINTR:
			continue
		case err != nil:
			l.commandFailed(c, &net.OpError{Op: "read", Net: "tcp", Addr: l.raddr, Err: os.NewSyscallError("read", err)}, mono)
			return
		case n == 0:
			l.commandFailed(c, io.EOF, mono)
			return
		}
		c.n += n
		done, err := pongReply(c.reply[:c.n], c.n == len(c.reply))
		if !done {
			continue
		}
		if err != nil {
			l.commandFailed(c, err, mono)
			return
		}
		unix.Close(c.fd)
		c.fd, c.state = -1, chIdle
		l.r.rec.pingOK(c.id, c.sent)
		c.sched.Reset()
		c.everUp = true
		// valkey-benchmark -k 0: a new connection per request.
		l.open(c, now, mono)
		return
	}
}

// pongReply reports whether buf holds the whole reply to a PING (a line;
// full: no more room, which ends it too), and an error unless it is
// +PONG.
func pongReply(buf []byte, full bool) (bool, error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 && !full {
		return false, nil
	}
	if bytes.HasPrefix(buf, []byte("+PONG\r")) {
		return true, nil
	}
	if i >= 0 {
		buf = buf[:i+1]
	}
	return true, fmt.Errorf("PING: %q", bytes.TrimSpace(truncate(buf)))
}

// dialFailed records a failed connect of c and schedules its next.
func (l *churnLoop) dialFailed(c *churnClient, err error, mono int64) {
	l.r.rec.dialFailed(&net.OpError{Op: "dial", Net: "tcp", Addr: l.raddr, Err: err})
	l.retry(c, mono)
}

// commandFailed records a failed PING of c and schedules its next
// connect: its connection was new, so the failure counts against the
// schedule, as in rawClient.
func (l *churnLoop) commandFailed(c *churnClient, err error, mono int64) {
	l.r.rec.failedCommand(err)
	l.retry(c, mono)
}

func (l *churnLoop) retry(c *churnClient, mono int64) {
	if c.fd >= 0 {
		unix.Close(c.fd) // also leaves the epoll set
		c.fd = -1
	}
	c.state = chIdle
	d := c.sched.Failure()
	if !c.everUp && l.r.warming.Load() {
		// As rawClient's pace: a client that never came up restarts no
		// faster than a deploy would during warm-up.
		c.fails++
		d = max(d, warmupRetry(c.fails))
	}
	l.setDue(c, mono+int64(d))
}

func (l *churnLoop) setDue(c *churnClient, due int64) {
	c.due = due
	l.nextDue = min(l.nextDue, due)
}

func (l *churnLoop) closeAll() {
	for i := range l.clients {
		if c := &l.clients[i]; c.fd >= 0 {
			unix.Close(c.fd)
			c.fd = -1
		}
	}
}
