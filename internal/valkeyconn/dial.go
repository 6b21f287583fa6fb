package valkeyconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/netns"
)

// DialTCP makes the TCP connection to a from the network namespace ns (""
// = stormguard's own) with d. The socket is created inside the namespace
// and stays bound to it; nothing else runs there. A host name is resolved
// first, outside: Go's resolver may run on other threads, which are not in
// the namespace.
func DialTCP(ctx context.Context, d *net.Dialer, a addr.Addr, ns string) (net.Conn, error) {
	host := a.Host
	if ns != "" && net.ParseIP(host) == nil {
		ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host}
		}
		host = ips[0].IP.String()
	}
	target := net.JoinHostPort(host, strconv.Itoa(a.Port))
	var c net.Conn
	err := netns.Do(ns, func() error {
		var err error
		c, err = d.DialContext(ctx, "tcp", target)
		return err
	})
	return c, err
}

// HandshakeTLS runs the TLS client handshake on raw, outside any
// namespace; raw is closed when it fails.
func HandshakeTLS(ctx context.Context, raw net.Conn, cfg *tls.Config) (net.Conn, error) {
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("TLS handshake: %w%s: %w", ErrTLSNoAnswer, TLSNoAnswerHint, err)
		}
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return conn, nil
}

// ErrTLSNoAnswer is wrapped by a TLS handshake the server did not answer
// in time.
var ErrTLSNoAnswer = errors.New("no answer in time")

// TLSNoAnswerHint is the likely cause of a TLS handshake the server never
// answers: a plaintext Valkey reads the ClientHello as the start of a
// command and waits for the rest of it.
const TLSNoAnswerHint = " (a plaintext port reached with valkeys://, or a server too busy to answer)"

// dialCtxFn returns a valkey.ClientOption.DialCtxFn over the TCP dial
// (DialTCP: inside the target's namespace), then TLS outside (HandshakeTLS),
// both within the dialer's timeout. onConn, when set, sees each raw TCP
// connection first (check records its local address).
func dialCtxFn(dial func(context.Context, *net.Dialer) (net.Conn, error), onConn func(net.Conn)) func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) {
	return func(ctx context.Context, _ string, d *net.Dialer, tc *tls.Config) (net.Conn, error) {
		if d.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d.Timeout)
			defer cancel()
		}
		raw, err := dial(ctx, d)
		if err != nil {
			return nil, err
		}
		if onConn != nil {
			onConn(raw)
		}
		if tc == nil {
			return raw, nil
		}
		return HandshakeTLS(ctx, raw, tc)
	}
}
