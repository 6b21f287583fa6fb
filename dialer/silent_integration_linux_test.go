package dialer_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stormguard/stormguard/dialer"
	"github.com/stormguard/stormguard/dialer/internal/stormtest"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationSilentCut: a real valkey-server in a namespace the test
// creates, and a blip (an nftables rule drops every TCP packet to its
// port). The healthy connection's PING times out: an episode of
// timeouts. The redial gets no SYN-ACK: it is cut before the kernel's
// SYN retransmit and fails at DialTimeout's deadline. Once the rule is
// gone the next dial connects and PINGs.
// A connection lost to CLIENT KILL (a close) under the same blip is
// redialled uncut, until DialTimeout, as before.
func TestIntegrationSilentCut(t *testing.T) {
	sandboxtest.Require(t)
	sb := sandboxtest.New(t, sandbox.Options{})
	nw := stormtest.NewNet(sb)
	// DialTimeout well above the cut, so that a cut delayed by a loaded
	// machine (the cutter waits out late timers) still comes first. The
	// cut applies to attempts inside the episode of timeouts: a window of
	// 2 s with every draw at its earliest point (firstDraw) redials at
	// once and well inside it, however late a loaded machine gets to the
	// redial (a 10 ms window was over before some redials began).
	d, err := dialer.New(dialer.Options{Dial: nw.Dial, FirstConnectWindow: -1, Rate: -1, BreakerThreshold: -1,
		StableAfter: -1, ReconnectWindow: 2 * time.Second, DialTimeout: 6 * time.Second, Rand: firstDraw{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Connects the dialer learns loopback's connect time from: the cut
	// needs 200 ms + srtt + 4 × rttvar below it, and a single first
	// sample slowed by a loaded machine (rttvar = half of it) could
	// rule the cut out; 30 samples bring the estimate down to loopback's.
	for range 30 {
		w, err := d.DialContext(ctx, "tcp", sb.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
	}
	c, err := d.DialContext(ctx, "tcp", sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := command(c, r, "PING"); err != nil {
		t.Fatal(err)
	}
	unblock := stormtest.Blackhole(t, sb)
	_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if err := command(c, r, "PING"); err == nil {
		t.Fatal("PING answered through the blackhole")
	}
	_ = c.Close()
	if _, err := d.DialContext(ctx, "tcp", sb.Addr()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("redial into the blip: %v; want DialTimeout's deadline", err)
	}
	if st := d.Stats(sb.Addr()); st.SilentCuts != 1 || st.DialFailures != 1 {
		t.Fatalf("stats %+v: want one silent cut, one failed dial", st)
	}
	unblock()
	c2, err := d.DialContext(ctx, "tcp", sb.Addr())
	if err != nil {
		t.Fatalf("dial after the blip: %v", err)
	}
	defer c2.Close()
	r2 := bufio.NewReader(c2)
	_ = c2.SetDeadline(time.Now().Add(10 * time.Second))
	if err := command(c2, r2, "PING"); err != nil {
		t.Fatalf("PING after the blip: %v", err)
	}

	// A close (CLIENT KILL): not an episode of timeouts, no cut.
	dk, err := dialer.New(dialer.Options{Dial: nw.Dial, FirstConnectWindow: -1, Rate: -1, BreakerThreshold: -1,
		StableAfter: -1, ReconnectWindow: 10 * time.Millisecond, DialTimeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	k, err := dk.DialContext(ctx, "tcp", sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	kr := bufio.NewReader(k)
	_ = k.SetDeadline(time.Now().Add(10 * time.Second))
	if err := command(k, kr, "CLIENT SETNAME victim"); err != nil {
		t.Fatal(err)
	}
	if err := command(c2, r2, "CLIENT KILL TYPE normal SKIPME yes"); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.ReadString('\n'); err == nil {
		t.Fatal("read after CLIENT KILL succeeded")
	}
	stormtest.Blackhole(t, sb) // removed with the test (Cleanup)
	if _, err := dk.DialContext(ctx, "tcp", sb.Addr()); !isTimeout(err) {
		t.Fatalf("redial after a kill into a blackhole: %v; want a timeout (DialTimeout)", err)
	}
	if st := dk.Stats(sb.Addr()); st.SilentCuts != 0 || st.DialFailures != 1 {
		t.Errorf("after the kill: stats %+v, want no silent cut and one failed dial", st)
	}
}

// firstDraw is a jitter source whose every draw is the earliest point
// (0): waits inside a window or a backoff end at once.
type firstDraw struct{}

func (firstDraw) Float64() float64 { return 0 }

// isTimeout: err is a timeout (a context deadline, or net.Dialer's i/o
// timeout when the socket's own deadline ended the connect first).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
