package sandbox

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// MaxHosts bounds AddHosts: host k gets 10.77.(k+1).1, one /24 each.
const MaxHosts = 250

// The client hosts' network: one private /16 that exists only on the
// sandbox's bridge and the hosts' veth ends. No namespace gets a default
// route, so nothing sent there can leave the machine.
var (
	hostNetPrefix = netip.MustParsePrefix("10.77.0.0/16")
	serverLinkIP  = netip.MustParseAddr("10.77.0.1")
)

// bridgeName is the bridge inside the sandbox's namespace.
const bridgeName = "sgbr0"

// Host is a client host: a network namespace joined to the sandbox's by a
// veth pair on the sandbox's bridge.
type Host struct {
	// Name is the namespace name (ip netns NAME), NetNS its path.
	Name, NetNS string
	// Addr is the host's address on the link, 10.77.(k+1).1.
	Addr netip.Addr
	// Link is the veth end inside the host (eth0); Peer the end on the
	// sandbox's bridge.
	Link, Peer string
}

// LinkOptions shape every host's link, both directions: with netem where
// the kernel has it, else with a DelayLine.
type LinkOptions struct {
	// RTT is the round trip added: RTT/2 on each direction.
	RTT time.Duration
	// DelayLine delays with a DelayLine even where netem exists (to
	// compare the two, or to test the delay line there).
	DelayLine bool
}

// How AddHosts delayed the hosts' links (RTTMethod).
const (
	RTTNetem     = "netem"
	RTTDelayLine = "delay line"
)

// HostAddr is host k's address.
func HostAddr(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 77, byte(k + 1), 1})
}

// HostLinkAddr is the address a sandbox's Valkey has on its hosts' link
// (LinkAddr), known before the sandbox exists (for certificates).
func HostLinkAddr() netip.Addr { return serverLinkIP }

// LinkAddr is Valkey's address on the hosts' link; valid once AddHosts
// ran.
func (s *Sandbox) LinkAddr() netip.Addr { return serverLinkIP }

// AddHosts creates n client hosts joined to the sandbox's namespace by a
// bridge, with ordinary private addresses (10.77.0.1 for the sandbox,
// 10.77.(k+1).1 for host k, all in 10.77.0.0/16, no default route), and
// makes Valkey listen on the link address too when it starts next (call
// AddHosts before StartValkey, e.g. with Options.NoValkey). Close removes
// the hosts with the sandbox.
func (s *Sandbox) AddHosts(ctx context.Context, n int, link LinkOptions) ([]Host, error) {
	if n < 1 || n > MaxHosts {
		return nil, fmt.Errorf("hosts: %d is outside 1..%d", n, MaxHosts)
	}
	if len(s.hosts) > 0 {
		return nil, fmt.Errorf("hosts: %s already has client hosts", s.Name)
	}
	bits := hostNetPrefix.Bits()
	server := []string{
		"link add " + bridgeName + " type bridge",
		"link set " + bridgeName + " up",
		fmt.Sprintf("addr add %s/%d dev %s", serverLinkIP, bits, bridgeName),
	}
	if err := s.ipBatch(ctx, s.Name, server); err != nil {
		return nil, err
	}
	s.bindExtra = serverLinkIP.String()
	s.rttMethod = ""
	if link.RTT > 0 {
		s.rttMethod = RTTDelayLine
		if !link.DelayLine && s.hasNetem(ctx) {
			s.rttMethod = RTTNetem
		}
	}
	for k := 0; k < n; k++ {
		h := Host{Name: fmt.Sprintf("%sh%d", s.Name, k), Addr: HostAddr(k), Link: "eth0", Peer: "vh" + strconv.Itoa(k)}
		h.NetNS = "/var/run/netns/" + h.Name
		if out, err := exec.CommandContext(ctx, "ip", "netns", "add", h.Name).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("create client host namespace %s: %v: %s", h.Name, err, strings.TrimSpace(string(out)))
		}
		s.hosts = append(s.hosts, h)
		if s.rttMethod == RTTDelayLine {
			continue // below, all hosts' links on one relay
		}
		if err := s.ipBatch(ctx, s.Name, []string{
			fmt.Sprintf("link add %s type veth peer name %s netns %s", h.Peer, h.Link, h.Name),
			fmt.Sprintf("link set %s master %s up", h.Peer, bridgeName),
		}); err != nil {
			return nil, err
		}
		if err := s.ipBatch(ctx, h.Name, []string{
			"link set lo up",
			fmt.Sprintf("addr add %s/%d dev %s", h.Addr, bits, h.Link),
			fmt.Sprintf("link set %s up", h.Link),
		}); err != nil {
			return nil, err
		}
		if link.RTT > 0 {
			if err := s.netem(ctx, s.Name, h.Peer, link.RTT/2); err != nil {
				return nil, err
			}
			if err := s.netem(ctx, h.Name, h.Link, link.RTT/2); err != nil {
				return nil, err
			}
		}
	}
	if s.rttMethod == RTTDelayLine {
		if err := s.addDelayedHosts(ctx, link.RTT/2); err != nil {
			return nil, err
		}
	}
	return append([]Host(nil), s.hosts...), nil
}

// RTTMethod says how AddHosts delayed the links: RTTNetem, RTTDelayLine,
// or "" (no RTT asked).
func (s *Sandbox) RTTMethod() string { return s.rttMethod }

// addDelayedHosts joins every host to the sandbox with a link of one
// DelayLine instead of a veth on the bridge: TUN device h.Peer in the
// sandbox's namespace with a route to the host's /24, TUN device h.Link
// in the host with its address in the hosts' /16 (so 10.77.0.1, on the
// bridge, is reached through it). Point-to-point devices need no
// neighbour discovery.
func (s *Sandbox) addDelayedHosts(ctx context.Context, oneWay time.Duration) error {
	links := make([]Link, len(s.hosts))
	for k, h := range s.hosts {
		links[k] = Link{PathA: s.NetNS, DevA: h.Peer, PathB: h.NetNS, DevB: h.Link}
	}
	l, err := NewDelayLine(links, oneWay)
	if err != nil {
		return err
	}
	s.line = l
	for k, h := range s.hosts {
		hostNet := netip.PrefixFrom(HostAddr(k), 24).Masked()
		if err := s.ipBatch(ctx, s.Name, []string{
			"link set " + h.Peer + " up",
			fmt.Sprintf("route add %s dev %s", hostNet, h.Peer),
		}); err != nil {
			return err
		}
		if err := s.ipBatch(ctx, h.Name, []string{
			"link set lo up",
			fmt.Sprintf("addr add %s/%d dev %s", h.Addr, hostNetPrefix.Bits(), h.Link),
			fmt.Sprintf("link set %s up", h.Link),
		}); err != nil {
			return err
		}
	}
	return nil
}

// hasNetem reports whether netem can be put on a link here (tc present
// and the kernel has the qdisc), trying it on the sandbox's bridge.
func (s *Sandbox) hasNetem(ctx context.Context) bool {
	if exec.CommandContext(ctx, "tc", "-n", s.Name, "qdisc", "add", "dev", bridgeName, "root", "netem", "delay", "1us").Run() != nil {
		return false
	}
	_ = exec.CommandContext(ctx, "tc", "-n", s.Name, "qdisc", "del", "dev", bridgeName, "root").Run()
	return true
}

func (s *Sandbox) netem(ctx context.Context, ns, dev string, delay time.Duration) error {
	us := strconv.FormatInt(delay.Microseconds(), 10) + "us"
	out, err := exec.CommandContext(ctx, "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "netem", "delay", us).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netem on %s in %s: %v: %s", dev, ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ipBatch runs ip commands inside namespace ns.
func (s *Sandbox) ipBatch(ctx context.Context, ns string, cmds []string) error {
	cmd := exec.CommandContext(ctx, "ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("set up client hosts' link in %s: %v: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeHosts deletes the hosts' namespaces (their veth ends go with
// them) after killing anything left running in them.
func (s *Sandbox) removeHosts() error {
	var first error
	if s.line != nil {
		s.line.Close()
		s.line = nil
	}
	for _, h := range s.hosts {
		killNamespaceProcs(h.NetNS)
		if out, err := exec.Command("ip", "netns", "del", h.Name).CombinedOutput(); err != nil && first == nil {
			first = fmt.Errorf("delete client host namespace %s: %v: %s", h.Name, err, strings.TrimSpace(string(out)))
		}
	}
	s.hosts = nil
	return first
}
