//go:build linux

package sample

import (
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdSleeper sleeps on a timerfd through Go's network poller, with raw system
// calls only. At a 10 ms interval the sampler sleeps 100 times a second,
// and how it sleeps is much of what an idle agent costs: a Go timer also
// wakes the runtime's sysmon thread when it fires (sysmon sleeps until
// the next timer), and so does any ordinary system call made while every P
// is idle, after which sysmon polls every 20 µs while the sample runs. A
// kernel timer read and re-armed with RawSyscall wakes one thread per
// sample: the one the network poller hands the sampler to. A wake-up
// (poke) makes the timer expire at once.
type fdSleeper struct {
	f    *os.File
	fd   uintptr
	rc   syscall.RawConn
	read func(fd uintptr) bool
	buf  [8]byte
	// mu keeps poke, which other goroutines call, off a closed (and
	// perhaps reused) descriptor.
	mu     sync.Mutex
	closed bool
}

// newSleeper returns a timerfd sleeper, or the portable one if the kernel
// will not give a timerfd.
func newSleeper() sleeper {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return newChanSleeper()
	}
	f := os.NewFile(uintptr(fd), "sampler-timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return newChanSleeper()
	}
	c := &fdSleeper{f: f, fd: uintptr(fd), rc: rc}
	c.read = func(fd uintptr) bool {
		for {
			_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&c.buf[0])), uintptr(len(c.buf)))
			if e != unix.EINTR {
				// Not yet due: park in the network poller.
				return e != unix.EAGAIN
			}
		}
	}
	return c
}

// set arms the timer to expire once after d (at least 1 ns: zero would
// disarm it). Re-arming also drops an expiry not yet read.
func (c *fdSleeper) set(d time.Duration) {
	ts := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(max(d, 1)))}
	unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, c.fd, 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
}

func (c *fdSleeper) arm(d time.Duration) { c.set(d) }

// block returns when the timer expired, or at once if the file is closed
// (an error from Read).
func (c *fdSleeper) block() { _ = c.rc.Read(c.read) }

func (c *fdSleeper) poke() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.set(1)
	}
}

func (c *fdSleeper) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.f.Close()
}
