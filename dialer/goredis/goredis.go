// Package goredis plugs a storm-safe dialer.Dialer into go-redis v9.
//
//	d, _ := dialer.New(dialer.Options{})   // one per process, shared
//	rdb := redis.NewClient(&redis.Options{
//		Addr:   "10.0.0.5:6379",
//		Dialer: goredis.Dialer(d),
//	})
//
// go-redis retries "max number of clients reached" and dial errors (up to
// 20 dials per command by default). With this hook each of those goes
// through the Dialer's breaker, backoff and rate limit; refused dials cost
// no network I/O.
package goredis

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/dialer"
)

// Dialer returns a function for redis.Options.Dialer that dials through d.
func Dialer(d *dialer.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
}

// TLSDialer is Dialer with a TLS handshake using cfg. go-redis does not
// apply Options.TLSConfig when Options.Dialer is set, so TLS users need
// this one. A handshake EOF counts as overload of the target.
func TLSDialer(d *dialer.Dialer, cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialTLSContext(ctx, network, addr, cfg)
	}
}

// The adapter must keep fitting go-redis's field.
var _ = redis.Options{Dialer: Dialer(nil)}
