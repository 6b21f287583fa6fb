//go:build linux

package sample

import (
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdSleeper is a timerfd read and re-armed with raw system calls only, by a
// goroutine parked in Go's network poller that passes each expiry on to C.
// At a 10 ms interval the sampler sleeps 100 times a second, and how it
// sleeps is much of what an idle agent costs: a Go timer also wakes the
// runtime's sysmon thread when it fires (sysmon sleeps until the next
// timer), after which sysmon polls every 20 µs while the sample runs. A
// kernel timer wakes one thread per sample, the one the network poller
// hands the reading goroutine to, which then readies the sampler on the
// same thread.
type fdSleeper struct {
	f  *os.File
	fd uintptr
	c  chan time.Time
}

// newSleeper returns a timerfd sleeper, or the portable one if the kernel
// will not give a timerfd.
func newSleeper() sleeper {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return newTimerSleeper()
	}
	f := os.NewFile(uintptr(fd), "sampler-timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return newTimerSleeper()
	}
	s := &fdSleeper{f: f, fd: uintptr(fd), c: make(chan time.Time, 1)}
	go s.run(rc)
	return s
}

// run passes each expiry to c until the file is closed.
func (s *fdSleeper) run(rc syscall.RawConn) {
	var buf [8]byte
	read := func(fd uintptr) bool {
		for {
			_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			if e != unix.EINTR {
				// Not yet due: park in the network poller.
				return e != unix.EAGAIN
			}
		}
	}
	for {
		if err := rc.Read(read); err != nil {
			return // closed
		}
		select {
		case s.c <- time.Time{}:
		default: // one pending is enough
		}
	}
}

// arm makes the timer expire once after d (at least 1 ns: zero would
// disarm it). Re-arming drops an expiry not yet read.
func (s *fdSleeper) arm(d time.Duration) {
	ts := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(max(d, 1)))}
	unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, s.fd, 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
}

func (s *fdSleeper) C() <-chan time.Time { return s.c }

func (s *fdSleeper) close() { s.f.Close() }
