package goredis_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/dialer"
	"github.com/stormguard/stormguard/dialer/goredis"
	"github.com/stormguard/stormguard/dialer/internal/stormtest"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

const (
	maxClients = 12
	hammerFor  = 2 * time.Second
)

// TestIntegrationMaxClients: a real valkey-server at maxclients, after a
// blip cut the client's connection and idle connections took every slot.
// The application keeps issuing commands for hammerFor. Plain go-redis
// retries the maxclients reply with fresh dials (four request goroutines); through the dialer the
// dials are limited by the target-wide backoff and breaker. When the idle
// connections go, both recover.
func TestIntegrationMaxClients(t *testing.T) {
	plain := run(t, false)
	guarded := run(t, true)
	t.Logf("dials while saturated for %s: plain go-redis %d, through dialer %d", hammerFor, plain, guarded)
	if plain < 20 {
		t.Errorf("plain go-redis made only %d dials in %s; the storm baseline did not reproduce", plain, hammerFor)
	}
	if guarded > 12 {
		t.Errorf("through the dialer: %d dials in %s, want ≤ 12 (backoff + breaker)", guarded, hammerFor)
	}
	if guarded*3 > plain {
		t.Errorf("dialer cut dials only from %d to %d; want at least 3×", plain, guarded)
	}
}

// run returns the dials made while saturated.
func run(t *testing.T, guard bool) int64 {
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--maxclients", fmt.Sprint(maxClients)}})
	nw := stormtest.NewNet(sb)
	opt := &redis.Options{Addr: sb.Addr(), Dialer: nw.Dial, PoolSize: 4}
	var d *dialer.Dialer
	if guard {
		var err error
		d, err = dialer.New(dialer.Options{
			Dial:               nw.Dial,
			FirstConnectWindow: 50 * time.Millisecond,
			StableAfter:        200 * time.Millisecond,
			Backoff:            backoff.FullJitter{Base: 200 * time.Millisecond, Cap: 2 * time.Second},
			BreakerThreshold:   4,
			BreakerOpenFor:     time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		opt.Dialer = goredis.Dialer(d)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ping := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return rdb.Ping(ctx).Err()
	}
	if err := ping(5 * time.Second); err != nil {
		t.Fatalf("PING before the storm: %v", err)
	}

	t.Logf("guard=%v: blip", guard)
	release := nw.Blip()
	idle := stormtest.Saturate(t, sb, 300*time.Millisecond)
	defer stormtest.CloseAll(idle)
	release()
	t.Logf("guard=%v: saturated with %d idle connections", guard, len(idle))

	// Four request goroutines, as an application serving traffic has.
	before := nw.Dials()
	var failedN atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(hammerFor)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if ping(200*time.Millisecond) != nil {
					failedN.Add(1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	failed := failedN.Load()
	dials := nw.Dials() - before
	t.Logf("guard=%v: %d dials, %d failed commands; recovering", guard, dials, failed)
	if failed == 0 {
		t.Fatalf("guard=%v: no command failed while Valkey was at maxclients", guard)
	}
	if guard {
		if st := d.Stats(sb.Addr()); st.Overloads == 0 {
			t.Errorf("dialer saw no overload at maxclients: %+v", st)
		}
	}

	stormtest.CloseAll(idle)
	deadline := time.Now().Add(20 * time.Second)
	for ping(time.Second) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("guard=%v: client did not recover within 20s after the idle connections closed", guard)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return dials
}
