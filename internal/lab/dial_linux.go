//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socketFactory creates sockets inside one network namespace on a single
// OS thread that stays there for the factory's life. Only socket(2) needs
// the namespace; connect and I/O happen on any thread.
type socketFactory struct {
	reqs chan sockReq
	done chan struct{}
	// ready holds IPv4 sockets made ahead of time, refilled in batches
	// when it runs low: waking the namespace thread for every dial costs
	// a context switch each, which on a loaded machine capped the
	// generator below valkey-benchmark's rate.
	ready chan int
	low   chan struct{}
}

type sockReq struct {
	domain int
	reply  chan sockReply
}

type sockReply struct {
	fd  int
	err error
}

func newSocketFactory(nsPath string, batch int) (*socketFactory, error) {
	ns, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	f := &socketFactory{reqs: make(chan sockReq), done: make(chan struct{}),
		ready: make(chan int, batch), low: make(chan struct{}, 1)}
	errc := make(chan error, 1)
	go func() {
		// The thread returns to its own namespace and is unlocked when
		// the factory closes, rather than being left to die locked: a
		// child started with Pdeathsig (the sandbox's valkey-server)
		// from a thread that later ran this goroutine would be killed
		// when the thread exits.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ns.Close()
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer orig.Close()
		err = unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET)
		ns.Close()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", nsPath, err)
			return
		}
		defer func() {
			if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			} // else stay locked: the thread dies with the goroutine
		}()
		errc <- nil
		defer func() {
			for {
				select {
				case fd := <-f.ready:
					unix.Close(fd)
				default:
					return
				}
			}
		}()
		for {
			f.refill()
			select {
			case <-f.done:
				return
			case <-f.low:
			case r := <-f.reqs:
				fd, err := unix.Socket(r.domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				r.reply <- sockReply{fd, err}
			}
		}
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return f, nil
}

func (f *socketFactory) close() { close(f.done) }

// refill tops up the prefetched IPv4 sockets. It runs on the namespace
// thread.
func (f *socketFactory) refill() {
	for len(f.ready) < cap(f.ready) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return // out of fds: dials fall back to requests and see the error
		}
		f.ready <- fd
	}
}

func (f *socketFactory) socket(ctx context.Context, domain int) (int, error) {
	if domain == unix.AF_INET {
		select {
		case fd := <-f.ready:
			if len(f.ready) < cap(f.ready)*3/4 {
				select {
				case f.low <- struct{}{}:
				default:
				}
			}
			return fd, nil
		default:
			select {
			case f.low <- struct{}{}:
			default:
			}
		}
	}
	reply := make(chan sockReply, 1)
	select {
	case f.reqs <- sockReq{domain, reply}:
	case <-f.done:
		return -1, errors.New("socket factory closed")
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	r := <-reply
	if r.err != nil {
		return -1, os.NewSyscallError("socket", r.err)
	}
	return r.fd, nil
}

// dial connects to addr (an IP literal and port; names are resolved in
// the caller's namespace) with a socket made inside the namespace.
func (f *socketFactory) dial(ctx context.Context, network, addr string, src netip.Addr) (net.Conn, error) {
	ap, err := resolve(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	var sa unix.Sockaddr
	domain := unix.AF_INET
	if ap.Addr().Is4() || ap.Addr().Is4In6() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	} else {
		domain = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := f.socket(ctx, domain)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(ap), Err: err}
	}
	if src.IsValid() {
		if err := bindSource(fd, src); err != nil {
			unix.Close(fd)
			return nil, &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(ap), Err: err}
		}
	}
	// Register with Go's poller (a non-blocking fd handed to os.NewFile
	// joins it) before connect(2): an edge-triggered readiness that
	// arrived between connect and registration would be lost.
	file := os.NewFile(uintptr(fd), "tcp "+addr)
	if err := connectWait(ctx, file, sa); err != nil {
		file.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(ap), Err: err}
	}
	// Clients send small requests; client libraries set TCP_NODELAY too.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	return &fileConn{File: file, fd: fd, raddr: net.TCPAddrFromAddrPort(ap)}, nil
}

// fileConn is a connected TCP socket served by Go's poller through its
// *os.File. net.FileConn would dup the fd, register the copy with the
// poller again and ask the kernel for both addresses: five more system
// calls per dial, which showed in the generator's connection rate.
// Errors unwrap to the same errno values (ECONNRESET, EPIPE),
// os.ErrDeadlineExceeded and io.EOF that a *net.TCPConn gives.
type fileConn struct {
	*os.File
	fd    int
	raddr *net.TCPAddr
}

var _ net.Conn = (*fileConn)(nil)

// LocalAddr asks the kernel; nobody in the lab needs it per dial.
func (c *fileConn) LocalAddr() net.Addr {
	sa, err := unix.Getsockname(c.fd)
	if err != nil {
		return &net.TCPAddr{}
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return &net.TCPAddr{}
}

func (c *fileConn) RemoteAddr() net.Addr { return c.raddr }

// connectWait starts a non-blocking connect on file and waits for its
// outcome, parking the goroutine (not a thread), honouring ctx.
func connectWait(ctx context.Context, file *os.File, sa unix.Sockaddr) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = file.SetWriteDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = file.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := file.SyscallConn()
	if err != nil {
		return err
	}
	started := false
	var result error
	// settled reports whether the connect has finished, with result set
	// when it failed. It costs one system call when it has: on loopback
	// and on a fast LAN the handshake is usually complete by the time
	// connect(2) returns EINPROGRESS, and asking at once saves parking
	// the goroutine and waking it through the poller — a measurable share
	// of the generator's cost per connection.
	settled := func(fd int) bool {
		if peerConnected(fd) {
			return true
		}
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			result = os.NewSyscallError("getsockopt", err)
			return true
		}
		switch e := unix.Errno(v); e {
		case 0, unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
			// Not connected yet, or a spurious wake-up (net's
			// connect makes the same check).
			return false
		default:
			result = os.NewSyscallError("connect", e)
			return true
		}
	}
	werr := rc.Write(func(fd uintptr) bool {
		if !started {
			// First call: the poller was reset just before it, so
			// the completion event cannot be missed.
			started = true
			switch err := unix.Connect(int(fd), sa); err {
			case nil:
				return true
			case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
				return settled(int(fd))
			default:
				result = os.NewSyscallError("connect", err)
				return true
			}
		}
		return settled(int(fd))
	})
	if werr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			return fmt.Errorf("connect: %w", os.ErrDeadlineExceeded)
		}
		return werr
	}
	return result
}

// bindSource binds fd to the address src, leaving the port to connect(2)
// (IP_BIND_ADDRESS_NO_PORT), which picks one unique for the whole 4-tuple
// rather than for src alone.
func bindSource(fd int, src netip.Addr) error {
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	var sa unix.Sockaddr
	if src.Is4() {
		sa = &unix.SockaddrInet4{Addr: src.As4()}
	} else {
		sa = &unix.SockaddrInet6{Addr: src.As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return os.NewSyscallError("bind "+src.String(), err)
	}
	return nil
}

// bindNoPort is net.Dialer's ControlContext for a dial from a source
// address: the port is left to connect(2), as in bindSource.
func bindNoPort(_ context.Context, _, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
}

// peerConnected reports whether fd has a peer, i.e. its connect has
// completed. It calls getpeername(2) directly: unix.Getpeername also asks
// for the socket's protocol (another system call) and allocates.
func peerConnected(fd int) bool {
	var rsa unix.RawSockaddrAny
	l := uint32(unsafe.Sizeof(rsa))
	_, _, e := unix.RawSyscall(unix.SYS_GETPEERNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)))
	return e == 0
}
