package valkeygo_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/dialer"
	"github.com/stormguard/stormguard/dialer/internal/stormtest"
	"github.com/stormguard/stormguard/dialer/valkeygo"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

const (
	maxClients = 12
	hammerFor  = 2 * time.Second
)

// TestIntegrationMaxClients: a real valkey-server at maxclients. After a
// blip cut the client's connection and idle connections took every slot,
// the application keeps issuing commands for hammerFor. Plain valkey-go
// redials on every command (measured in a child process, see plainInChild);
// through the dialer the dials are limited by
// the target-wide backoff and breaker. When the idle connections go, the
// guarded client recovers.
func TestIntegrationMaxClients(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		fmt.Printf("PLAIN_DIALS=%d\n", run(t, false))
		return
	}
	sandboxtest.Require(t)
	plain := plainInChild(t)
	guarded := run(t, true)
	t.Logf("dials while saturated for %s: plain valkey-go %d, through dialer %d", hammerFor, plain, guarded)
	if plain < 20 {
		t.Errorf("plain valkey-go made only %d dials in %s; the storm baseline did not reproduce", plain, hammerFor)
	}
	if guarded > 12 {
		t.Errorf("through the dialer: %d dials in %s, want ≤ 12 (backoff + breaker)", guarded, hammerFor)
	}
	if guarded*3 > plain {
		t.Errorf("dialer cut dials only from %d to %d; want at least 3×", plain, guarded)
	}
}

// childEnv makes TestIntegrationMaxClients run only the plain baseline.
const childEnv = "STORMGUARD_TEST_VALKEYGO_PLAIN_CHILD"

// plainInChild runs the plain valkey-go baseline in a child process:
// valkey-go v1.0.79 sometimes crashes the whole process at maxclients with
// "protocol bug, message handled out of order" from its background reader
// (seen once in this test; cf. valkey-go #79), and that must not take the
// test binary down. A crashed run is logged and retried.
func plainInChild(t *testing.T) int64 {
	t.Helper()
	for try := 1; try <= 3; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestIntegrationMaxClients$", "-test.count", "1")
		cmd.Env = append(os.Environ(), childEnv+"=1")
		out, err := cmd.CombinedOutput()
		cancel()
		if bytes.Contains(out, []byte("protocol bug, message handled out of order")) {
			t.Logf("try %d: plain valkey-go crashed at maxclients: panic: protocol bug, message handled out of order", try)
			continue
		}
		m := regexp.MustCompile(`PLAIN_DIALS=(\d+)`).FindSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("plain baseline child: %v\n%s", err, out)
		}
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return n
	}
	t.Fatal("plain valkey-go crashed in all 3 baseline runs")
	return 0
}

// run returns the dials made while saturated.
func run(t *testing.T, guard bool) int64 {
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--maxclients", fmt.Sprint(maxClients)}})
	nw := stormtest.NewNet(sb)
	opt := valkey.ClientOption{
		InitAddress:  []string{sb.Addr()},
		DisableCache: true,
		// valkey-go's own lazy redial; one wire keeps counts readable.
		PipelineMultiplex: -1,
		DialCtxFn: func(ctx context.Context, addr string, _ *net.Dialer, _ *tls.Config) (net.Conn, error) {
			return nw.Dial(ctx, "tcp", addr)
		},
	}
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
		opt.DialCtxFn = valkeygo.DialCtxFn(d)
	}
	client, err := valkey.NewClient(opt)
	if err != nil {
		t.Fatalf("connect (guard=%v): %v", guard, err)
	}
	defer client.Close()
	ping := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return client.Do(ctx, client.B().Ping().Build()).Error()
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

	before := nw.Dials()
	failed := 0
	for end := time.Now().Add(hammerFor); time.Now().Before(end); {
		if ping(200*time.Millisecond) != nil {
			failed++
		}
		time.Sleep(10 * time.Millisecond)
	}
	dials := nw.Dials() - before
	if failed == 0 {
		t.Fatalf("guard=%v: no command failed while Valkey was at maxclients", guard)
	}
	if guard {
		if st := d.Stats(sb.Addr()); st.Overloads == 0 {
			t.Errorf("dialer saw no overload at maxclients: %+v", st)
		}
	}

	t.Logf("guard=%v: %d dials, %d failed commands; recovering", guard, dials, failed)
	// The storm ends: the client must come back.
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
