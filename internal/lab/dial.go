package lab

import (
	"context"
	"net"
	"time"
)

// Prefetch sizes of the namespace socket factory: it holds up to prefetch
// sockets and is refilled when fewer than lowWater remain.
const (
	prefetch = 1024
	lowWater = 768
)

// DialFunc makes a TCP connection; it has the shape of
// net.Dialer.DialContext, go-redis's Options.Dialer and dialer.Options.Dial.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// NewDialer returns a DialFunc that creates its sockets inside the network
// namespace at nsPath (the current namespace when empty), and a function
// that releases it. timeout bounds each connect (0: only the context).
func NewDialer(nsPath string, timeout time.Duration) (DialFunc, func(), error) {
	if nsPath == "" {
		d := &net.Dialer{Timeout: timeout}
		return d.DialContext, func() {}, nil
	}
	f, err := newSocketFactory(nsPath)
	if err != nil {
		return nil, nil, err
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		return f.dial(ctx, network, addr)
	}
	return dial, f.close, nil
}
