package dialer_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/dialer"
	"github.com/stormguard/stormguard/dialer/internal/stormtest"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationObserveInfo: INFO clients cpu stats from a real
// valkey-server, read twice through a Dialer's connection with PINGs in
// between, gives a busy share within [0, 1] and a finite starting rate
// within its bounds, and the window a loss then opens is the server's
// connected_clients over that rate.
func TestIntegrationObserveInfo(t *testing.T) {
	sb, d, ctx := infoServer(t, dialer.Options{})
	const idle = 40
	for range idle {
		c, err := d.DialContext(ctx, "tcp", sb.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	c, r := infoConn(ctx, t, d, sb.Addr())
	first := time.Now()
	if err := observe(d, sb.Addr(), c, r); err != nil {
		t.Fatal(err)
	}
	// Load between the readings, for a second (the least span the dialer
	// compares readings over) and at most 20,000 PINGs.
	for i := 0; i < 20000 && time.Since(first) < 1100*time.Millisecond; i++ {
		if err := command(c, r, "PING"); err != nil {
			t.Fatal(err)
		}
	}
	for time.Since(first) < 1100*time.Millisecond {
		time.Sleep(10 * time.Millisecond) // the span itself, not synchronisation
	}
	if err := observe(d, sb.Addr(), c, r); err != nil {
		t.Fatal(err)
	}
	st := d.Stats(sb.Addr())
	if !(st.ServerBusy >= 0 && st.ServerBusy <= 1) {
		t.Fatalf("busy share %g not within [0, 1]", st.ServerBusy)
	}
	if !(st.StartRate >= dialer.DefaultAcceptRate/4 && st.StartRate <= dialer.DefaultMaxAcceptRateFactor*dialer.DefaultAcceptRate) {
		t.Fatalf("start rate %g out of bounds", st.StartRate)
	}
	want := time.Duration(float64(idle+1) / st.StartRate * float64(time.Second))
	if diff := st.Window - want; diff < -time.Microsecond || diff > time.Microsecond {
		t.Errorf("window %s, want %d clients / %.0f/s = %s", st.Window, idle+1, st.StartRate, want)
	}
	t.Logf("busy %.4f, start rate %.0f/s, window %s", st.ServerBusy, st.StartRate, st.Window)
}

// TestIntegrationObserveInfoOneReading: one INFO server clients cpu
// stats reply of a real valkey-server that reports 2 s of uptime or more
// tells the busy share over its life (its uptime_in_seconds), so a
// dialer that has read INFO once starts at the server-told rate.
func TestIntegrationObserveInfoOneReading(t *testing.T) {
	sb, d, ctx := infoServer(t, dialer.Options{})
	c, r := infoConn(ctx, t, d, sb.Addr())
	// Poll (not observed) until the server reports 2 s of uptime (the
	// least the dialer takes), at most ~10 s.
	var info string
	for i := 0; ; i++ {
		var err error
		if info, err = readInfo(c, r, "server", "clients", "cpu", "stats"); err != nil {
			t.Fatal(err)
		}
		s, err := dialer.ParseInfo(info)
		if err != nil {
			t.Fatal(err)
		}
		if s.Uptime >= 2*time.Second && s.CPU >= 0 && s.Connections >= 1 {
			break
		}
		if i == 200 {
			t.Fatalf("no uptime of 2 s after %d readings: %+v", i, s)
		}
		time.Sleep(50 * time.Millisecond) // the server's clock, polled
	}
	if st := d.Stats(sb.Addr()); st.ServerBusy != -1 {
		t.Fatalf("busy share %g before any reading", st.ServerBusy)
	}
	if err := d.ObserveInfo(sb.Addr(), info); err != nil {
		t.Fatal(err)
	}
	st := d.Stats(sb.Addr())
	if !(st.ServerBusy >= 0 && st.ServerBusy <= 1) {
		t.Fatalf("one reading with uptime: busy share %g, want within [0, 1]", st.ServerBusy)
	}
	if !(st.StartRate >= dialer.DefaultAcceptRate/4 && st.StartRate <= dialer.DefaultMaxAcceptRateFactor*dialer.DefaultAcceptRate) {
		t.Fatalf("start rate %g out of bounds", st.StartRate)
	}
	t.Logf("busy %.4f, start rate %.0f/s, window %s", st.ServerBusy, st.StartRate, st.Window)
}

// TestIntegrationRestartWindow: after two INFO readings of a real
// valkey-server, a dial that its kernel refuses (the server was killed)
// restarts the episode with the window sized at the server-told rate
// (the default restart factor is 1; the rule at other factors is tested
// in server_test.go), and once a new server listens the next dial
// connects.
func TestIntegrationRestartWindow(t *testing.T) {
	sb, d, ctx := infoServer(t, dialer.Options{BreakerThreshold: -1})
	c, r := infoConn(ctx, t, d, sb.Addr())
	first := time.Now()
	if err := observe(d, sb.Addr(), c, r); err != nil {
		t.Fatal(err)
	}
	for time.Since(first) < 1100*time.Millisecond {
		time.Sleep(10 * time.Millisecond) // the span the dialer compares readings over, not synchronisation
	}
	if err := observe(d, sb.Addr(), c, r); err != nil {
		t.Fatal(err)
	}
	before := d.Stats(sb.Addr())
	if before.ServerBusy < 0 {
		t.Fatal("two INFO readings told no busy share")
	}
	if err := sb.StopValkey(); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if _, err := d.DialContext(ctx, "tcp", sb.Addr()); err == nil {
		t.Fatal("dial to a stopped server connected")
	}
	st := d.Stats(sb.Addr())
	if st.DialFailures != 1 || st.Breaker != "closed" {
		t.Fatalf("after the refusal: %d dial failures, breaker %s; want 1, closed", st.DialFailures, st.Breaker)
	}
	restart := min(before.StartRate, dialer.DefaultMaxAcceptRateFactor*dialer.DefaultAcceptRate)
	clients := float64(before.Window) * before.AcceptRate / float64(time.Second)
	want := time.Duration(clients / restart * float64(time.Second))
	if diff := st.Window - want; diff < -time.Microsecond || diff > time.Microsecond {
		t.Errorf("window after the refusal %s, want %.0f clients / %.0f/s = %s (before it: %s)", st.Window, clients, restart, want, before.Window)
	}
	if err := sb.StartValkey(ctx); err != nil {
		t.Fatal(err)
	}
	c2, err := d.DialContext(ctx, "tcp", sb.Addr())
	if err != nil {
		t.Fatalf("dial after the restart: %v", err)
	}
	_ = c2.Close()
}

// infoServer starts a real valkey-server in a sandbox of the test's own
// and returns it with a Dialer for it (o with the sandbox's Dial, no
// first-connect window and no rate limit) and a context that ends with
// the test, 30 s at most.
func infoServer(t *testing.T, o dialer.Options) (*sandbox.Sandbox, *dialer.Dialer, context.Context) {
	t.Helper()
	sandboxtest.Require(t)
	sb := sandboxtest.New(t, sandbox.Options{})
	o.Dial, o.FirstConnectWindow, o.Rate = stormtest.NewNet(sb).Dial, -1, -1
	d, err := dialer.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return sb, d, ctx
}

// infoConn dials addr through d and returns the connection, closed when
// the test ends, with a 20 s deadline and a reader on it.
func infoConn(ctx context.Context, t *testing.T, d *dialer.Dialer, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

// observe reads INFO clients cpu stats on c and passes it to d.
func observe(d *dialer.Dialer, addr string, c net.Conn, r *bufio.Reader) error {
	info, err := readInfo(c, r, "clients", "cpu", "stats")
	if err != nil {
		return err
	}
	return d.ObserveInfo(addr, info)
}

// readInfo sends INFO with sections on c and returns the reply's text.
func readInfo(c net.Conn, r *bufio.Reader, sections ...string) (string, error) {
	cmd := fmt.Sprintf("*%d\r\n$4\r\nINFO\r\n", len(sections)+1)
	for _, s := range sections {
		cmd += fmt.Sprintf("$%d\r\n%s\r\n", len(s), s)
	}
	if _, err := io.WriteString(c, cmd); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
	if err != nil || !strings.HasPrefix(line, "$") {
		return "", fmt.Errorf("INFO reply %q", line)
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", err
	}
	return string(body[:n]), nil
}

// command sends one inline command and reads a one-line reply.
func command(c net.Conn, r *bufio.Reader, cmd string) error {
	if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err == nil && strings.HasPrefix(line, "-") {
		err = fmt.Errorf("%s: %s", cmd, strings.TrimSpace(line))
	}
	return err
}

// TestIntegrationPoolRedialsOnCredits: a process with a pool of
// connections to a real valkey-server that CLIENT KILL closes at once
// redials every one of them without waiting for the token bucket — each
// loss gave the target a credit — while growing the pool past what it
// lost still waits for a token. The bucket is set so that no token comes
// during the test (burst = the pool, then one per 100 s): without credits
// every redial would fail at once with ErrRateLimited.
func TestIntegrationPoolRedialsOnCredits(t *testing.T) {
	sandboxtest.Require(t)
	sb := sandboxtest.New(t, sandbox.Options{})
	nw := stormtest.NewNet(sb)
	const pool = 20
	d, err := dialer.New(dialer.Options{
		Dial: nw.Dial, FirstConnectWindow: -1, Rate: 0.01, Burst: pool,
		StableAfter: -1, BreakerThreshold: -1,
		// The fleet is unknown: the episode lasts ReconnectWindow. A long
		// one, with every draw at its earliest point (firstDraw), keeps
		// all 20 losses and redials inside one episode however late a
		// loaded machine runs them, and the redials go at once.
		ReconnectWindow: 20 * time.Second, Rand: firstDraw{},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dialPing := func() (net.Conn, error) {
		c, err := d.DialContext(ctx, "tcp", sb.Addr())
		if err != nil {
			return nil, err
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if err := command(c, bufio.NewReader(c), "PING"); err != nil { // the handshake: stable at once
			_ = c.Close()
			return nil, err
		}
		return c, nil
	}
	conns := make([]net.Conn, pool)
	for i := range conns {
		if conns[i], err = dialPing(); err != nil {
			t.Fatalf("filling the pool: %v", err)
		}
	}
	admin, err := nw.Dial(ctx, "tcp", sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	_ = admin.SetDeadline(time.Now().Add(30 * time.Second))
	if err := command(admin, bufio.NewReader(admin), "CLIENT KILL TYPE normal"); err != nil {
		t.Fatal(err)
	}
	// Like a pool: each connection's loss (EOF on its read) is followed
	// by its redial.
	errs := make(chan error, pool)
	for _, c := range conns {
		go func() {
			_, err := c.Read(make([]byte, 16))
			_ = c.Close()
			if err == nil {
				errs <- errors.New("a killed connection read data")
				return
			}
			nc, err := dialPing()
			if err == nil {
				_ = nc.Close()
			}
			errs <- err
		}()
	}
	for range pool {
		if err := <-errs; err != nil {
			t.Errorf("redial after the kill: %v", err)
		}
	}
	if st := d.Stats(sb.Addr()); st.CreditDials != pool {
		t.Errorf("CreditDials %d, want %d (one per lost connection)", st.CreditDials, pool)
	}
	// Growth past the lost pool: no credit left, no token for 100 s.
	if c, err := d.DialContext(ctx, "tcp", sb.Addr()); !errors.Is(err, dialer.ErrRateLimited) {
		if c != nil {
			_ = c.Close()
		}
		t.Errorf("growing the pool past what it lost: %v, want ErrRateLimited", err)
	}
}
