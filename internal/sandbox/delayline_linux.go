//go:build linux

package sandbox

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/netns"
)

// DelayLine is a point-to-point link between two network namespaces made
// of two TUN devices and a relay in this process that holds every packet
// for a fixed delay in each direction: a WAN emulator in user space, for
// kernels without netem (and fq and etf: nothing in the kernel delays a
// packet by a fixed time). Both TCP stacks, their queues and counters
// are the kernel's; a SYN is answered after 2 × delay, exactly as over a
// long link. Packets leave in the order they came (a constant delay never
// reorders).
//
// The relay costs this process's CPU: one read and one write system call
// per packet, and a wake-up per packet or batch of packets due together.
type DelayLine struct {
	delay   time.Duration
	fds     []*os.File
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closing sync.Once
	// Packets counts packets relayed, Dropped those dropped because the
	// line held lineCap packets already (a full link buffer).
	packets, dropped atomic.Uint64
}

// lineCap bounds the packets in flight in one direction, like a link's
// buffer: at a 0.5 ms delay that is 32 million packets/s.
const lineCap = 16384

// NewDelayLine creates TUN device devA in the network namespace at pathA
// and devB in the one at pathB ("" is the current namespace), and relays
// every packet between them after delay, both ways. The devices are down
// and have no address: the caller configures them (ip link set up, ip
// addr/route). Close removes both.
func NewDelayLine(pathA, devA, pathB, devB string, delay time.Duration) (*DelayLine, error) {
	if delay < 0 {
		return nil, fmt.Errorf("delay line: negative delay %s", delay)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &DelayLine{delay: delay, cancel: cancel}
	for _, e := range []struct{ path, dev string }{{pathA, devA}, {pathB, devB}} {
		var f *os.File
		if err := netns.Do(e.path, func() (err error) { f, err = openTUN(e.dev); return err }); err != nil {
			l.Close()
			return nil, err
		}
		l.fds = append(l.fds, f)
	}
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.relay(ctx, l.fds[0], l.fds[1]) }()
	go func() { defer l.wg.Done(); l.relay(ctx, l.fds[1], l.fds[0]) }()
	return l, nil
}

// Stats returns the packets relayed (both directions) and those dropped
// at a full line.
func (l *DelayLine) Stats() (packets, dropped uint64) { return l.packets.Load(), l.dropped.Load() }

// Close stops the relay and removes both devices (a TUN device that is
// not persistent goes with its last file descriptor).
func (l *DelayLine) Close() error {
	l.closing.Do(func() {
		l.cancel()
		for _, f := range l.fds {
			f.Close() // ends the readers' Read
		}
		l.wg.Wait()
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
	// Non-blocking, so the runtime poller owns it and Close ends a Read.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("delay line: %s: %w", dev, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+dev), nil
}

type packet struct {
	due int64 // monotonic nanoseconds (since lineEpoch)
	b   *[]byte
}

// lineEpoch anchors the relay's monotonic clock.
var lineEpoch = time.Now()

func lineNow() int64 { return int64(time.Since(lineEpoch)) }

// bufs recycles packet buffers (a TUN device without offloads hands out
// packets of at most its MTU, 1500 bytes by default).
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// relay copies packets from one TUN device to the other, each written
// delay after it was read; at most lineCap are in flight (more are
// dropped, like a full link buffer).
func (l *DelayLine) relay(ctx context.Context, from, to *os.File) {
	q := make(chan packet, lineCap)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range q {
			if !waitUntil(ctx, p.due) {
				return
			}
			_, _ = to.Write(*p.b)
			bufs.Put(p.b)
			l.packets.Add(1)
		}
	}()
	buf := make([]byte, 65536)
	for ctx.Err() == nil {
		n, err := from.Read(buf)
		if err != nil {
			break // closed (Close), or the device is gone
		}
		b := bufs.Get().(*[]byte)
		*b = append((*b)[:0], buf[:n]...)
		select {
		case q <- packet{lineNow() + int64(l.delay), b}:
		default:
			l.dropped.Add(1)
			bufs.Put(b)
		}
	}
	close(q)
	<-done
}

// waitUntil sleeps until the relay clock reaches due; false if ctx ended.
// Go's timers wake a sleeping process with millisecond resolution (the
// poller's epoll_wait timeout), which would add up to a millisecond to a
// half-millisecond delay, so the last stretch is a nanosleep(2) on this
// goroutine's thread, accurate to the kernel's timer slack (~50 µs).
func waitUntil(ctx context.Context, due int64) bool {
	d := time.Duration(due - lineNow())
	if d <= 0 {
		return ctx.Err() == nil
	}
	if d > 3*time.Millisecond {
		t := time.NewTimer(d - 2*time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	for {
		d = time.Duration(due - lineNow())
		if d <= 0 {
			return ctx.Err() == nil
		}
		ts := unix.NsecToTimespec(int64(d))
		_ = unix.Nanosleep(&ts, nil) // EINTR (the runtime's preemption signal): loop
	}
}
