//go:build linux

package sample

import (
	"errors"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdSleeper is a timerfd, re-armed and read with raw system calls only, by
// the sampler's own goroutine parked in Go's network poller. At a 10 ms
// interval the sampler sleeps 100 times a second, and how it sleeps is
// much of what an idle agent costs:
//
//   - a Go timer also wakes the runtime's sysmon thread when it fires
//     (sysmon sleeps until the next timer), after which sysmon polls every
//     20 µs while the sample runs; a kernel timer does not;
//   - a goroutine of its own reading the timerfd and handing each expiry
//     to the sampler over a channel cost a second thread wake-up per
//     sample: readying a goroutine from a running one makes the scheduler
//     wake an idle thread to look for work (wakep), which finds none and
//     sleeps again. Parked on the timerfd itself, the sampler is readied
//     by the network poller on the thread that polled, and runs there.
//
// interrupt (a wake-up, or the end of Run) sets a read deadline in the
// past, which readies the parked sampler at once from the calling
// goroutine, as a channel send did; sleep clears it again.
type fdSleeper struct {
	f  *os.File
	rc syscall.RawConn
	fd uintptr
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
	return &fdSleeper{f: f, rc: rc, fd: uintptr(fd)}
}

// readExpiry reads the timerfd's expiry count (raw: the runtime is not
// told); false while it has not expired, so rc.Read parks in the poller.
func readExpiry(fd uintptr) bool {
	var buf [8]byte
	for {
		_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		if e != unix.EINTR {
			return e != unix.EAGAIN
		}
	}
}

// sleep returns when the timer expired, or interrupt was called (since
// the last sleep), or the file was closed.
func (s *fdSleeper) sleep() {
	if err := s.rc.Read(readExpiry); errors.Is(err, os.ErrDeadlineExceeded) {
		// Cleared before the caller looks at its wake-ups: one that
		// interrupts after this is seen then or ends the next sleep.
		_ = s.f.SetReadDeadline(time.Time{})
	}
}

// interrupt ends the sleep under way, or the next one.
func (s *fdSleeper) interrupt() { _ = s.f.SetReadDeadline(time.Unix(1, 0)) }

// arm makes the timer expire once after d (at least 1 ns: zero would
// disarm it). Re-arming drops an expiry not yet read.
func (s *fdSleeper) arm(d time.Duration) {
	ts := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(max(d, 1)))}
	unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, s.fd, 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
}

func (s *fdSleeper) close() { s.f.Close() }
