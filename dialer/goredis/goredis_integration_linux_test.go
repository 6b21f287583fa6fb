package goredis_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/dialer"
	"github.com/stormguard/stormguard/dialer/goredis"
	"github.com/stormguard/stormguard/dialer/internal/stormtest"
)

// TestIntegrationMaxClients: a real valkey-server at maxclients, after a
// blip cut the client's connection and idle connections took every slot.
// The application keeps issuing commands for stormtest.HammerFor. Plain
// go-redis retries the maxclients reply with fresh dials (four request
// goroutines); through the dialer the dials are limited by the
// target-wide backoff and breaker. When the idle connections go, both
// recover.
func TestIntegrationMaxClients(t *testing.T) {
	plain := run(t, false)
	guarded := run(t, true)
	stormtest.CheckCut(t, "go-redis", plain, guarded)
}

// run returns the dials made while saturated.
func run(t *testing.T, guard bool) int64 {
	sb, nw := stormtest.NewServer(t)
	opt := &redis.Options{Addr: sb.Addr(), Dialer: nw.Dial, PoolSize: 4}
	var d *dialer.Dialer
	if guard {
		d = stormtest.GuardedDialer(t, nw)
		opt.Dialer = goredis.Dialer(d)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	// Four request goroutines, as an application serving traffic has.
	return stormtest.MaxClientsStorm(t, sb, nw, d, 4, func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return rdb.Ping(ctx).Err()
	})
}
