//go:build linux

package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox"
)

// delayLine joins the sandbox's namespace and a new client namespace with
// a point-to-point link (10.251.0.1 server side, 10.251.0.2 client side)
// that delays every packet by delay in each direction: a
// sandbox.DelayLine (two TUN devices and a relay in user space; this
// kernel has no netem, fq or etf qdisc), so both TCP stacks are the
// kernel's and a SYN takes 2 × delay to be answered, as over a long link.
func (r *run) delayLine(ctx context.Context, delay time.Duration) (clientNS string, cleanup func(), err error) {
	name := r.sb.Name + "-c"
	ns := "/var/run/netns/" + name
	var line *sandbox.DelayLine
	cleanup = func() {
		if line != nil {
			line.Close()
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	line, err = sandbox.NewDelayLine([]sandbox.Link{{PathA: r.sb.NetNS, DevA: "sgdl0", PathB: ns, DevB: "sgdl1"}}, delay)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	ends := []struct{ nsName, dev, local, peer string }{
		{r.sb.Name, "sgdl0", "10.251.0.1", "10.251.0.2"},
		{name, "sgdl1", "10.251.0.2", "10.251.0.1"},
	}
	for _, e := range ends {
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
	return ns, cleanup, nil
}
