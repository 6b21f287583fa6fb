//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/netns"
)

// delayLine joins the sandbox's namespace and a new client namespace with
// a point-to-point link (10.251.0.1 server side, 10.251.0.2 client side)
// made of two TUN devices and a relay that holds every packet for delay
// in each direction. This kernel has no netem, fq or etf qdisc (nothing in
// it delays a packet by a fixed time); the relay is a WAN emulator in
// user space, and both TCP stacks, their queues and counters are the
// kernel's: a SYN takes 2 × delay to be answered, exactly as over a long
// link. Packets are delivered in order (a constant delay never reorders).
func (r *run) delayLine(ctx context.Context, delay time.Duration) (clientNS string, cleanup func(), err error) {
	name := r.sb.Name + "-c"
	ns := "/var/run/netns/" + name
	var fds []*os.File
	var wg sync.WaitGroup
	lctx, cancel := context.WithCancel(context.Background())
	cleanup = func() {
		cancel()
		for _, f := range fds {
			f.Close() // unblocks the readers; the devices go with the fds
		}
		wg.Wait()
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	ends := []struct{ ns, nsName, dev, local, peer string }{
		{r.sb.NetNS, r.sb.Name, "sgdl0", "10.251.0.1", "10.251.0.2"},
		{ns, name, "sgdl1", "10.251.0.2", "10.251.0.1"},
	}
	for _, e := range ends {
		var f *os.File
		if err := netns.Do(e.ns, func() error {
			var err error
			f, err = openTUN(e.dev)
			return err
		}); err != nil {
			cleanup()
			return "", nil, err
		}
		fds = append(fds, f)
		for _, st := range [][]string{
			{"-n", e.nsName, "link", "set", "lo", "up"},
			{"-n", e.nsName, "addr", "add", e.local, "peer", e.peer, "dev", e.dev},
			{"-n", e.nsName, "link", "set", e.dev, "up"},
		} {
			if out, err := exec.CommandContext(ctx, "ip", st...).CombinedOutput(); err != nil {
				cleanup()
				return "", nil, fmt.Errorf("ip %s: %v: %s", strings.Join(st, " "), err, out)
			}
		}
	}
	wg.Add(2)
	go func() { defer wg.Done(); relay(lctx, fds[0], fds[1], delay) }()
	go func() { defer wg.Done(); relay(lctx, fds[1], fds[0], delay) }()
	return ns, cleanup, nil
}

// openTUN creates a TUN device (IP packets, no packet-info header) in the
// calling thread's namespace.
func openTUN(dev string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TUN device %s: %w", dev, err)
	}
	// Non-blocking, so the runtime poller owns it and Close ends a Read.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+dev), nil
}

// relay copies packets from one TUN device to the other, each written
// delay after it was read. Bounded: at most 65,536 packets in flight (more
// are dropped, like a full link buffer).
func relay(ctx context.Context, from, to *os.File, delay time.Duration) {
	type pkt struct {
		due time.Time
		b   []byte
	}
	q := make(chan pkt, 65536)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range q {
			if d := time.Until(p.due); d > 0 {
				sleep(ctx, d)
			}
			if ctx.Err() != nil {
				return
			}
			_, _ = to.Write(p.b)
		}
	}()
	buf := make([]byte, 65536)
	for ctx.Err() == nil {
		n, err := from.Read(buf)
		if err != nil {
			break
		}
		b := make([]byte, n)
		copy(b, buf[:n])
		select {
		case q <- pkt{time.Now().Add(delay), b}:
		default: // link buffer full: drop
		}
	}
	close(q)
	<-done
}
