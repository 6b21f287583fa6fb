// Package valkeygo plugs a storm-safe dialer.Dialer into valkey-go.
//
//	d, _ := dialer.New(dialer.Options{})   // one per process, shared
//	client, err := valkey.NewClient(valkey.ClientOption{
//		InitAddress: []string{"10.0.0.5:6379"},
//		DialCtxFn:   valkeygo.DialCtxFn(d),
//	})
//
// valkey-go redials lazily on the next command with no backoff; with this
// hook every redial goes through the Dialer's breaker, backoff and rate
// limit, so commands fail fast (dialer.ErrBackingOff, dialer.ErrCircuitOpen)
// instead of adding connection attempts while the server is overloaded.
//
// This package is for applications, so it imports only the public dialer
// package; stormguard's own connections (namespaces, valkey-cli's TLS
// options) are built by its internal valkeyconn package, which applications
// cannot import. TLS here is whatever the application sets in
// valkey.ClientOption.TLSConfig.
package valkeygo

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/valkey-io/valkey-go"

	"github.com/stormguard/stormguard/dialer"
)

// DialCtxFn returns a function for valkey.ClientOption.DialCtxFn that dials
// through d. valkey-go's *net.Dialer argument is ignored: the Dialer's
// Options.Dial and DialTimeout decide how TCP connects. With a TLS config
// the handshake runs inside the Dialer, so a handshake EOF (TLS at
// maxclients) counts as overload of the target.
func DialCtxFn(d *dialer.Dialer) func(ctx context.Context, addr string, _ *net.Dialer, tc *tls.Config) (net.Conn, error) {
	return func(ctx context.Context, addr string, _ *net.Dialer, tc *tls.Config) (net.Conn, error) {
		if tc != nil {
			return d.DialTLSContext(ctx, "tcp", addr, tc)
		}
		return d.DialContext(ctx, "tcp", addr)
	}
}

// The adapter must keep fitting valkey-go's field.
var _ = valkey.ClientOption{DialCtxFn: DialCtxFn(nil)}
