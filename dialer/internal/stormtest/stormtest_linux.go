package stormtest

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/dialer"
	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// Net dials inside a sandbox's namespace, counts dials and remembers the
// connections, so a test can cut them (a network blip) and hold new dials
// back while it refills the server.
type Net struct {
	sb    *sandbox.Sandbox
	dials atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
	gate  chan struct{} // closed = open; nil = open
}

// NewNet returns a Net for sb.
func NewNet(sb *sandbox.Sandbox) *Net { return &Net{sb: sb} }

// Dial has the signature of dialer.Options.Dial and go-redis's Dialer.
func (n *Net) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	gate := n.gate
	n.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	n.dials.Add(1)
	var c net.Conn
	err := netns.Do(n.sb.NetNS, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.conns = append(n.conns, c)
	n.mu.Unlock()
	return c, nil
}

// Dials is the number of network dials made so far.
func (n *Net) Dials() int64 { return n.dials.Load() }

// Blip closes every connection made so far and holds new dials until
// the returned func is called.
func (n *Net) Blip() (release func()) {
	n.mu.Lock()
	gate := make(chan struct{})
	n.gate = gate
	conns := n.conns
	n.conns = nil
	n.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return func() {
		n.mu.Lock()
		n.gate = nil
		n.mu.Unlock()
		close(gate)
	}
}

// Saturate opens idle connections to the sandbox's Valkey until the server
// answers "-ERR max number of clients reached" several times in a row
// over at least settle, so slots freed late are taken too. It returns the
// idle connections; close them to end the saturation.
func Saturate(t testing.TB, sb *sandbox.Sandbox, settle time.Duration) []net.Conn {
	t.Helper()
	var idle []net.Conn
	start := time.Now()
	rejected := 0
	for i := 0; i < 10000; i++ {
		if rejected >= 3 && time.Since(start) >= settle {
			return idle
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("saturating Valkey: no steady maxclients rejection after 30s (%d idle)", len(idle))
		}
		c, err := sb.Dial(context.Background())
		if err != nil {
			t.Fatalf("saturating Valkey: dial: %v", err)
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := func() (string, error) {
			if _, err := c.Write([]byte("PING\r\n")); err != nil {
				return "", err
			}
			return bufio.NewReader(c).ReadString('\n')
		}()
		_ = c.SetDeadline(time.Time{})
		switch {
		case err == nil && strings.HasPrefix(line, "+PONG"):
			idle = append(idle, c)
			rejected = 0
		case strings.HasPrefix(line, "-ERR max number of clients"):
			c.Close()
			rejected++
			time.Sleep(50 * time.Millisecond)
		default:
			c.Close()
			t.Fatalf("saturating Valkey: PING answered %q, %v", line, err)
		}
	}
	t.Fatal("saturating Valkey: too many connections")
	return nil
}

// CloseAll closes conns.
func CloseAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// Both adapters' maxclients test: the server's limit and how long the
// application keeps issuing commands while the server is saturated.
const (
	MaxClients = 12
	HammerFor  = 2 * time.Second
)

// NewServer starts a sandbox whose Valkey allows MaxClients clients, and
// a Net dialing into it.
func NewServer(t testing.TB) (*sandbox.Sandbox, *Net) {
	t.Helper()
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--maxclients", strconv.Itoa(MaxClients)}})
	return sb, NewNet(sb)
}

// GuardedDialer is the dialer the adapters' tests put in front of their
// client: quick first connect window and stability, a target-wide full
// jitter backoff (200ms to 2s) and a breaker that opens after 4 failures.
func GuardedDialer(t testing.TB, nw *Net) *dialer.Dialer {
	t.Helper()
	d, err := dialer.New(dialer.Options{
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
	return d
}

// MaxClientsStorm runs the maxclients storm against a client that
// answers ping: after a blip cut the client's connection and idle
// connections took every slot, workers goroutines keep sending PINGs for
// HammerFor; then the idle connections go and the client must recover
// within 20s. d is the client's dialer (nil: the plain library), checked
// to have seen the overload. It returns the network dials made while
// saturated.
func MaxClientsStorm(t testing.TB, sb *sandbox.Sandbox, nw *Net, d *dialer.Dialer, workers int, ping func(time.Duration) error) int64 {
	t.Helper()
	guard := d != nil
	if err := ping(5 * time.Second); err != nil {
		t.Fatalf("PING before the storm: %v", err)
	}
	t.Logf("guard=%v: blip", guard)
	release := nw.Blip()
	idle := Saturate(t, sb, 300*time.Millisecond)
	defer CloseAll(idle)
	release()
	t.Logf("guard=%v: saturated with %d idle connections", guard, len(idle))

	before := nw.Dials()
	var failedN atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(HammerFor)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if ping(200*time.Millisecond) != nil {
					failedN.Add(1)
				}
				time.Sleep(10 * time.Millisecond) // the application's pace, not synchronisation
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
	// The storm ends: the client must come back.
	CloseAll(idle)
	deadline := time.Now().Add(20 * time.Second)
	for ping(time.Second) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("guard=%v: client did not recover within 20s after the idle connections closed", guard)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return dials
}

// CheckCut checks the outcome both adapters promise: the plain library
// reproduced the storm (≥ 20 dials in HammerFor), the dialer kept to ≤ 12
// and cut dials at least 3×.
func CheckCut(t testing.TB, lib string, plain, guarded int64) {
	t.Helper()
	t.Logf("dials while saturated for %s: plain %s %d, through dialer %d", HammerFor, lib, plain, guarded)
	if plain < 20 {
		t.Errorf("plain %s made only %d dials in %s; the storm baseline did not reproduce", lib, plain, HammerFor)
	}
	if guarded > 12 {
		t.Errorf("through the dialer: %d dials in %s, want ≤ 12 (backoff + breaker)", guarded, HammerFor)
	}
	if guarded*3 > plain {
		t.Errorf("dialer cut dials only from %d to %d; want at least 3×", plain, guarded)
	}
}

// Blackhole drops every TCP packet to the sandbox's Valkey port in its
// namespace (an nftables input-hook rule, which sees loopback traffic
// too), as the lab's blip scenario does: established connections and
// new SYNs get no answer. The returned func removes the rule; the
// sandbox's namespace takes it along anyway.
func Blackhole(t testing.TB, sb *sandbox.Sandbox) (remove func()) {
	t.Helper()
	del, err := sandbox.Blackhole(sb.NetNS, sb.Port, "stormtest_blackhole", "drop")
	if err != nil {
		t.Fatalf("blackhole in %s: %v", sb.Name, err)
	}
	var once sync.Once
	remove = func() {
		once.Do(func() {
			if err := del(); err != nil {
				t.Errorf("remove the drop rule in %s: %v", sb.Name, err)
			}
		})
	}
	t.Cleanup(remove)
	return remove
}
