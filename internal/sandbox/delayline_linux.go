//go:build linux

package sandbox

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/netns"
)

// Link is one point-to-point link of a DelayLine: TUN device DevA in the
// network namespace at PathA and DevB in the one at PathB ("" is the
// current namespace).
type Link struct {
	PathA, DevA, PathB, DevB string
}

// DelayLine is a set of point-to-point links between network namespaces,
// each made of two TUN devices, and one relay that holds every packet for
// a fixed delay in each direction: a WAN emulator in user space, for
// kernels without netem (and fq and etf: nothing in the kernel delays a
// packet by a fixed time). Both TCP stacks, their queues and counters
// are the kernel's; a SYN is answered after 2 × delay, exactly as over a
// long link. Packets leave in the order they came (a constant delay never
// reorders).
//
// The relay is one OS thread in a ppoll(2) loop over every device: it
// reads what arrived, writes what is due, and sleeps until the next
// packet is due (ppoll's timeout is in nanoseconds; Go's timers wake a
// sleeping process with millisecond resolution, which would double a 1 ms
// RTT). Per packet that is one read, one write and at most two wake-ups,
// fewer when packets arrive or fall due together. In a binary that calls
// ServeDelayLine first thing (stormguard does), the relay runs in a child
// process of that binary at a raised CPU priority (nice -10), so that its
// wake-ups are neither queued behind the parent's goroutines (a storm's
// thousands of clients on Go's scheduler) nor behind other processes on a
// loaded machine; otherwise on a locked thread of this process.
type DelayLine struct {
	delay   time.Duration
	fds     []*os.File
	closing sync.Once
	// In process: stopW ends the relay (closed by Close), done says it
	// ended. Child: stdin is its lifeline (it exits at EOF, i.e. when
	// Close closes it or this process dies).
	stopW *os.File
	done  chan struct{}
	child *exec.Cmd
	stdin io.Closer
}

// delayLineEnv tells a child started by NewDelayLine to relay (value: the
// one-way delay) between its file descriptors 3 and 4, 5 and 6, …
// (delayLineFDs: how many).
const (
	delayLineEnv    = "STORMGUARD_DELAY_LINE_CHILD"
	delayLineFDsEnv = "STORMGUARD_DELAY_LINE_FDS"
)

// childRelay is set when the binary calls ServeDelayLine, i.e. can serve
// as the relay's child process.
var childRelay atomic.Bool

// relayNice is the child relay's nice value: its wake-ups are what the
// link's delay is made of.
const relayNice = -10

// lineCap bounds the packets in flight in one direction of a link, like
// a link's buffer (more are dropped): at a 0.5 ms delay, 32 million
// packets/s.
const lineCap = 16384

// ServeDelayLine must be called first thing in main (and TestMain): in a
// process started by NewDelayLine as its relay, it relays until its
// parent goes and exits; otherwise it returns at once and lets
// NewDelayLine run relays in child processes of this binary.
func ServeDelayLine() {
	v := os.Getenv(delayLineEnv)
	if v == "" {
		childRelay.Store(true)
		return
	}
	delay, err := time.ParseDuration(v)
	n, err2 := strconv.Atoi(os.Getenv(delayLineFDsEnv))
	if err != nil || err2 != nil || n < 2 || n%2 != 0 {
		fmt.Fprintln(os.Stderr, "delay line: bad", delayLineEnv, v, delayLineFDsEnv, os.Getenv(delayLineFDsEnv))
		os.Exit(2)
	}
	fds := make([]int, n)
	for i := range fds {
		fds[i] = 3 + i
	}
	// Until stdin ends: the parent closed it, or died. On one thread
	// (the timer slack set there is per thread).
	runtime.LockOSThread()
	if err := relayLoop(fds, 0, delay); err != nil {
		fmt.Fprintln(os.Stderr, "delay line:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// NewDelayLine creates every link's two TUN devices (down, without
// addresses: the caller configures them with ip link set up, ip
// addr/route) and relays every packet between the two ends of a link
// after delay, both ways. Close removes every device.
func NewDelayLine(links []Link, delay time.Duration) (*DelayLine, error) {
	if delay < 0 {
		return nil, fmt.Errorf("delay line: negative delay %s", delay)
	}
	l := &DelayLine{delay: delay}
	for _, k := range links {
		for _, e := range []struct{ path, dev string }{{k.PathA, k.DevA}, {k.PathB, k.DevB}} {
			var f *os.File
			if err := netns.Do(e.path, func() (err error) { f, err = openTUN(e.dev); return err }); err != nil {
				l.Close()
				return nil, err
			}
			l.fds = append(l.fds, f)
		}
	}
	var err error
	if childRelay.Load() {
		err = l.startChild()
	} else {
		err = l.startInProcess()
	}
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// startInProcess runs the relay on a locked OS thread of this process.
func (l *DelayLine) startInProcess() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("delay line: %w", err)
	}
	l.stopW, l.done = w, make(chan struct{})
	fds := make([]int, len(l.fds))
	for i, f := range l.fds {
		fds[i] = int(f.Fd())
	}
	go func() {
		defer close(l.done)
		defer r.Close()
		runtime.LockOSThread() // ppoll blocks this thread; never unlocked: it exits with the goroutine
		_ = relayLoop(fds, int(r.Fd()), l.delay)
	}()
	return nil
}

// startChild hands every device to a child process of this binary (see
// ServeDelayLine) and closes this process's copies, so the devices go when
// the child does.
func (l *DelayLine) startChild() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("delay line: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), delayLineEnv+"="+l.delay.String(), delayLineFDsEnv+"="+strconv.Itoa(len(l.fds)))
	cmd.ExtraFiles = l.fds
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("delay line: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("delay line: start relay process: %w", err)
	}
	l.child, l.stdin = cmd, stdin
	// Every thread of the child (Linux's nice is per thread; threads it
	// makes later inherit it from their creator).
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", cmd.Process.Pid))
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			_ = unix.Setpriority(unix.PRIO_PROCESS, tid, relayNice)
		}
	}
	for _, f := range l.fds {
		f.Close()
	}
	l.fds = nil
	return nil
}

// Close stops the relay and removes every device (a TUN device that is
// not persistent goes with its last file descriptor).
func (l *DelayLine) Close() error {
	l.closing.Do(func() {
		if l.stopW != nil {
			l.stopW.Close() // the relay sees its stop pipe hang up
			<-l.done
		}
		for _, f := range l.fds {
			f.Close()
		}
		if l.child != nil {
			l.stdin.Close()
			done := make(chan struct{})
			go func() { _ = l.child.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				_ = l.child.Process.Kill()
				<-done
			}
		}
	})
	return nil
}

// openTUN creates a TUN device (IP packets, no packet-info header) in the
// calling thread's namespace.
func openTUN(dev string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("delay line: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("delay line: device name %q: %w", dev, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("delay line: create TUN device %s: %w", dev, err)
	}
	// A plain blocking file: the relay sets its own copy non-blocking.
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+dev), nil
}

// lineQueue is one direction's packets in flight, oldest first.
type lineQueue struct {
	due  []int64 // monotonic ns
	pkts [][]byte
	head int
}

func (q *lineQueue) len() int { return len(q.pkts) - q.head }

func (q *lineQueue) push(due int64, b []byte) {
	if q.head > 0 && q.head == len(q.pkts) {
		q.due, q.pkts, q.head = q.due[:0], q.pkts[:0], 0
	}
	q.due = append(q.due, due)
	q.pkts = append(q.pkts, b)
}

func (q *lineQueue) pop() []byte {
	b := q.pkts[q.head]
	q.pkts[q.head] = nil
	q.head++
	return b
}

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// relayLoop relays between fds[2i] and fds[2i+1] for every i, each packet
// delay after it was read, until stop (a pipe's read end, or stdin) is
// readable or hangs up. It blocks its thread in ppoll: run it on a locked
// thread or in a process of its own.
func relayLoop(fds []int, stop int, delay time.Duration) error {
	for _, fd := range fds {
		if err := unix.SetNonblock(fd, true); err != nil {
			return err
		}
	}
	// Wake exactly when due rather than up to 50 µs late (the default
	// timer slack); the thread sleeps between packets anyway.
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
	pfd := make([]unix.PollFd, len(fds)+1)
	for i, fd := range fds {
		pfd[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	pfd[len(fds)] = unix.PollFd{Fd: int32(stop), Events: unix.POLLIN}
	q := make([]lineQueue, len(fds)) // q[i]: read from fds[i], to fds[i^1]
	var free [][]byte
	buf := make([]byte, 65536)
	for {
		now := monoNow()
		next := int64(-1)
		for i := range q {
			for q[i].len() > 0 && q[i].due[q[i].head] <= now {
				b := q[i].pop()
				_, _ = unix.Write(fds[i^1], b)
				free = append(free, b[:0])
			}
			if q[i].len() > 0 {
				if w := q[i].due[q[i].head] - now; next < 0 || w < next {
					next = w
				}
			}
		}
		var ts *unix.Timespec
		if next >= 0 {
			t := unix.NsecToTimespec(next)
			ts = &t
		}
		if _, err := unix.Ppoll(pfd, ts, nil); err != nil && err != unix.EINTR {
			return fmt.Errorf("ppoll: %w", err)
		}
		if pfd[len(fds)].Revents != 0 {
			return nil
		}
		now = monoNow()
		for i := range fds {
			if pfd[i].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
				return fmt.Errorf("device %d of the delay line is gone", i)
			}
			if pfd[i].Revents&unix.POLLIN == 0 {
				continue
			}
			for range 256 { // bounded: the other devices get their turn
				n, err := unix.Read(fds[i], buf)
				if err != nil || n <= 0 {
					break
				}
				if q[i].len() >= lineCap {
					continue // the line is full: dropped
				}
				var b []byte
				if k := len(free); k > 0 {
					b, free = free[k-1], free[:k-1]
				}
				q[i].push(now+int64(delay), append(b, buf[:n]...))
			}
		}
	}
}
