package stormtest

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sandbox"
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
