package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// prefetch is how many sockets a namespace's socket factory holds ready
// (refilled below three quarters); the client hosts' factories share it.
const prefetch = 1024

// DialFunc makes a TCP connection; it has the shape of
// net.Dialer.DialContext, go-redis's Options.Dialer and dialer.Options.Dial.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// NewDialer returns a DialFunc that creates its sockets inside the network
// namespace at nsPath (the current namespace when empty), and a function
// that releases it. timeout bounds each connect (0: only the context).
func NewDialer(nsPath string, timeout time.Duration) (DialFunc, func(), error) {
	d, err := newSourceDialer(nsPath, prefetch)
	if err != nil {
		return nil, nil, err
	}
	return withTimeout(d.from(netip.Addr{}), timeout), d.close, nil
}

func withTimeout(dial DialFunc, timeout time.Duration) DialFunc {
	if timeout <= 0 {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return dial(ctx, network, addr)
	}
}

// sourceDialer dials from a chosen local address, in a namespace or the
// current one.
type sourceDialer struct {
	f *socketFactory // nil: the current namespace, through net.Dialer
}

func newSourceDialer(nsPath string, batch int) (*sourceDialer, error) {
	if nsPath == "" {
		return &sourceDialer{}, nil
	}
	f, err := newSocketFactory(nsPath, batch)
	if err != nil {
		return nil, err
	}
	return &sourceDialer{f: f}, nil
}

func (d *sourceDialer) close() {
	if d.f != nil {
		d.f.close()
	}
}

// from returns a DialFunc whose connections come from src; an invalid src
// leaves the choice to the kernel.
func (d *sourceDialer) from(src netip.Addr) DialFunc {
	if d.f != nil {
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.f.dial(ctx, network, addr, src)
		}
	}
	nd := &net.Dialer{}
	if src.IsValid() {
		nd.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		nd.ControlContext = bindNoPort
	}
	return nd.DialContext
}

// Sources of the lab's clients. On a loopback target every instance can
// have its own source address in 127.0.0.0/8, as if the instances ran on
// different hosts: the server, the kernel's per-source accounting (and a
// per-source SYN limit) see a fleet, and the generator does not spend its
// time searching one address's ephemeral ports among tens of thousands of
// TIME_WAIT sockets, which a fleet of hosts would not either.
const maxSourceAddrs = 1 << 20

// sourceAddr is the k-th loopback source address: 127.0.0.1, 127.0.0.2, …
func sourceAddr(k int) netip.Addr {
	v := uint32(127)<<24 | uint32(1+k%maxSourceAddrs)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// sourceCount is how many source addresses cfg's instances are spread
// over: cfg.SourceAddrs (0: one per instance, at most Instances) when the
// target is a loopback IPv4 address, else 1 (the kernel's choice, also
// for valkey-glide), and an error when more than one was asked for a
// target or strategy that cannot have them.
func sourceCount(ctx context.Context, cfg Config, ownSource bool) (int, error) {
	if cfg.SourceAddrs == 1 || ownSource {
		// A strategy that dials by itself (valkey-glide's Rust core)
		// cannot be given a source; its check refuses SourceAddrs > 1.
		return 1, nil
	}
	ap, err := resolve(ctx, "tcp", cfg.Target)
	if err != nil {
		return 0, err
	}
	if a := ap.Addr().Unmap(); !a.Is4() || !a.IsLoopback() {
		if cfg.SourceAddrs > 1 {
			return 0, bad("SourceAddrs", "{SourceAddrs} %d needs a loopback IPv4 target (127.0.0.0/8); %s is not, so its clients connect from the address the kernel picks",
				cfg.SourceAddrs, cfg.Target)
		}
		return 1, nil
	}
	n := cfg.SourceAddrs
	if n == 0 {
		n = cfg.Instances
	}
	return min(n, cfg.Instances, maxSourceAddrs), nil
}

// resolve turns addr into an address and port, resolving a name in the
// caller's namespace.
func resolve(ctx context.Context, network, addr string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dial %s: %w", addr, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	pa, err := net.DefaultResolver.LookupPort(ctx, network, port)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve port %s: %w", port, err)
	}
	return netip.AddrPortFrom(ips[0], uint16(pa)), nil
}
