package dialer

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stormguard/stormguard/backoff"
)

// server is a loopback listener whose every connection is handled by fn.
func server(t *testing.T, fn func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go fn(c)
		}
	}()
	return ln.Addr().String()
}

// Server behaviours.
func rejectMaxClients(c net.Conn) {
	_, _ = c.Write([]byte("-ERR max number of clients reached\r\n"))
	c.Close()
}
func closeAtOnce(c net.Conn) { c.Close() }
func answerOK(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		if _, err := c.Write([]byte("+OK\r\n")); err != nil {
			return
		}
	}
}

// quick are options with tiny waits, for logic tests.
func quick() Options {
	return Options{
		Rate: -1, FirstConnectWindow: -1, ReconnectWindow: -1,
		Backoff:     backoff.FullJitter{Base: time.Millisecond, Cap: 2 * time.Millisecond},
		StableAfter: 50 * time.Millisecond,
	}
}

// handshake sends one command and reads one reply line through c.
func handshake(t *testing.T, c net.Conn) (string, error) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("HELLO 3\r\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// dialWith makes a Dialer with o and dials addr through it once.
func dialWith(t *testing.T, o Options, addr string) (*Dialer, net.Conn) {
	t.Helper()
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOptionsErrors(t *testing.T) {
	tests := []struct {
		o    Options
		want error
	}{
		{Options{Rate: -2}, ErrInvalidRate},
		{Options{Burst: -1}, ErrInvalidRate},
		{Options{Rate: -1, Burst: 5}, ErrBurstWithoutRate},
		{Options{StableAfter: -2}, ErrInvalidDuration},
		{Options{BreakerOpenFor: -1}, ErrInvalidDuration},
		{Options{BreakerThreshold: -1, BreakerOpenFor: time.Second}, ErrBreakerDisabled},
		{Options{BreakerThreshold: -1, HalfOpenProbes: 2}, ErrBreakerDisabled},
		{Options{BreakerThreshold: -3}, ErrInvalidBreaker},
		{Options{HalfOpenProbes: -1}, ErrInvalidBreaker},
		{Options{Backoff: backoff.GLIDE{JitterPercent: 101}}, ErrInvalidBackoff},
		{Options{SYNDeadline: -2}, ErrInvalidSYNDeadline},
		{Options{SYNDeadline: 100 * time.Millisecond}, ErrInvalidSYNDeadline},
		{Options{SYNDeadline: 2 * time.Second, DialTimeout: 2 * time.Second}, ErrInvalidSYNDeadline},
		{Options{SYNDeadline: 6 * time.Second}, ErrInvalidSYNDeadline}, // the default DialTimeout is 5s
		{Options{SilentCut: -2}, ErrInvalidSilentCut},
		{Options{SilentCut: 100 * time.Millisecond}, ErrInvalidSilentCut},
		{Options{SilentCut: time.Second}, ErrInvalidSilentCut}, // the kernel has retransmitted by then
		{Options{SYNDeadline: -1}, nil},
		{Options{SYNDeadline: 300 * time.Millisecond, DialTimeout: -1}, nil},
		{Options{}, nil},
		{Options{Rate: -1, BreakerThreshold: -1, StableAfter: -1, FirstConnectWindow: -1, DialTimeout: -1}, nil},
	}
	for _, tt := range tests {
		_, err := New(tt.o)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("New(%+v) = %v, want %v", tt.o, err, tt.want)
		}
	}
	if _, err := New(Options{Backoff: backoff.GLIDE{JitterPercent: 101}}); !errors.Is(err, backoff.ErrInvalidConfig) {
		t.Errorf("invalid backoff error %v does not wrap backoff.ErrInvalidConfig", err)
	}
}

func TestSniffReplies(t *testing.T) {
	tests := []struct {
		in   string
		want verdict
		rest string
	}{
		{"-ERR max number of clients reached\r\n", verdictOverload, ""},
		{"-ERR max number of clients + cluster connections reached\r\n", verdictOverload, ""},
		{"-NOAUTH Authentication required.\r\n+OK\r\n", verdictAdmitted, ""},
		{"%7\r\n$6\r\nserver", verdictAdmitted, "$6\r\nserver"},
		{"-ERR max number of cli", verdictUnknown, "-ERR max number of cli"},
		{"-ERR unknown command 'HELLO'\r\n", verdictUnknown, ""},
		{"", verdictUnknown, ""},
		{"+PONG\n", verdictAdmitted, ""},
	}
	for _, tt := range tests {
		v, _, rest := sniffReplies([]byte(tt.in))
		if v != tt.want || string(rest) != tt.rest {
			t.Errorf("sniffReplies(%q) = %v, rest %q; want %v, %q", tt.in, v, rest, tt.want, tt.rest)
		}
	}
}

// FuzzSniffReplies: any server bytes give a verdict without panicking,
// and the rest is a suffix of the input.
func FuzzSniffReplies(f *testing.F) {
	for _, s := range []string{"-ERR max number of clients reached\r\n", "+OK\r\n", "-NOAUTH x\r\n%7\r\n", "\n\n", "-", "\x16\x03\x01"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, line, rest := sniffReplies(b)
		if len(rest) > len(b) || string(b[len(b)-len(rest):]) != string(rest) {
			t.Fatalf("rest %q is not a suffix of %q", rest, b)
		}
		if v == verdictOverload && len(line) < len(maxClientsPrefix) {
			t.Fatalf("overload on short line %q", line)
		}
	})
}

// TestMaxClientsBacksOffTarget: a maxclients reply makes the whole target
// back off; a dial whose deadline comes first is refused without I/O.
func TestMaxClientsBacksOffTarget(t *testing.T) {
	addr := server(t, rejectMaxClients)
	o := quick()
	o.Backoff = backoff.FullJitter{Base: 10 * time.Second, Cap: 10 * time.Second}
	o.BreakerThreshold = -1
	var seen []EventKind
	var mu sync.Mutex
	o.OnEvent = func(e Event) { mu.Lock(); seen = append(seen, e.Kind); mu.Unlock() }
	// A Rand at 0.99 makes the full-jitter delay ~9.9s.
	o.Rand = fixedRand(0.99)
	d, c := dialWith(t, o, addr)
	if line, err := handshake(t, c); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("reply %q, %v; want ErrOverloaded in place of the rejection", line, err)
	}
	c.Close()
	st := d.Stats(addr)
	if st.Overloads != 1 || st.Failures != 1 || time.Until(st.NextDial) < 5*time.Second {
		t.Fatalf("after maxclients reply: %+v; want 1 overload, 1 failure, next dial ≳9.9s away", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := d.DialContext(ctx, "tcp", addr); !errors.Is(err, ErrBackingOff) {
		t.Fatalf("second dial = %v, want ErrBackingOff", err)
	}
	if st := d.Stats(addr); st.Dials != 1 || st.Refused != 1 {
		t.Fatalf("stats %+v: want 1 dial, 1 refused", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if !contains(seen, EventOverload) || !contains(seen, EventBackoff) {
		t.Fatalf("events %v lack overload/backoff", seen)
	}
}

func contains(ks []EventKind, k EventKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

type fixedRand float64

func (f fixedRand) Float64() float64 { return float64(f) }

// TestHandshakeEOFIsOverload: an accept followed by close before any reply.
func TestHandshakeEOFIsOverload(t *testing.T) {
	addr := server(t, closeAtOnce)
	d, err := New(quick())
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, c); err == nil {
		t.Fatal("expected EOF or reset")
	}
	c.Close()
	if st := d.Stats(addr); st.Overloads != 1 {
		t.Fatalf("stats %+v: want 1 overload", st)
	}
}

// TestTLSHandshakeEOFIsOverload: TLS clients at maxclients see only EOF.
func TestTLSHandshakeEOFIsOverload(t *testing.T) {
	addr := server(t, closeAtOnce)
	d, err := New(quick())
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.DialTLSContext(context.Background(), "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		t.Fatal("TLS handshake with a closing server succeeded")
	}
	if st := d.Stats(addr); st.Overloads != 1 {
		t.Fatalf("stats %+v: want 1 overload (%v)", st, err)
	}
}

// TestResetOnlyAfterStable: a TCP connect does not reset the backoff, a
// handshake does not either; the connection staying up StableAfter does.
// A connection lost before that counts as a failure.
func TestResetOnlyAfterStable(t *testing.T) {
	addr := server(t, answerOK)
	o := quick()
	o.StableAfter = 300 * time.Millisecond
	o.BreakerThreshold = -1
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		d.ReportOverload(addr, nil)
	}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(addr); st.Failures != 3 {
		t.Fatalf("after TCP connect: failures %d, want still 3", st.Failures)
	}
	sent := time.Now()
	if line, err := handshake(t, c); err != nil || line != "+OK\r\n" {
		t.Fatalf("handshake: %q %v", line, err)
	}
	// Unless this process stalled for StableAfter since (a loaded CI
	// machine), the connection is not stable yet.
	if st := d.Stats(addr); time.Since(sent) < o.StableAfter && (st.Failures != 3 || st.Healthy != 0) {
		t.Fatalf("right after handshake: %+v, want failures still 3", st)
	}
	waitFor(t, "backoff reset after StableAfter", func() bool { return d.Stats(addr).Healthy == 1 })
	if st := d.Stats(addr); st.Failures != 0 || !st.NextDial.IsZero() {
		t.Fatalf("after stable: %+v, want reset", st)
	}
	c.Close()

	// Lost between handshake and stability: a failure, no reset. A
	// StableAfter no stall reaches, so the loss always comes first.
	o.StableAfter = time.Hour
	if d, err = New(o); err != nil {
		t.Fatal(err)
	}
	var srv net.Conn
	var srvMu sync.Mutex
	addr2 := server(t, func(c net.Conn) {
		srvMu.Lock()
		srv = c
		srvMu.Unlock()
		answerOK(c)
	})
	c2, err := d.DialContext(context.Background(), "tcp", addr2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, c2); err != nil {
		t.Fatal(err)
	}
	srvMu.Lock()
	srv.Close()
	srvMu.Unlock()
	buf := make([]byte, 1)
	if _, err := c2.Read(buf); !errors.Is(err, io.EOF) && !isEOFOrReset(err) {
		t.Fatalf("read after server close: %v", err)
	}
	if st := d.Stats(addr2); st.Failures != 1 || st.Healthy != 0 || st.Overloads != 0 {
		t.Fatalf("conn lost before stable: %+v, want 1 failure, 0 healthy, 0 overloads", st)
	}
	c2.Close()
}

// TestBreaker opens after K failures, refuses without dialing, half-opens
// after BreakerOpenFor with one probe, and closes when the probe completes
// its handshake.
func TestBreaker(t *testing.T) {
	addr := server(t, answerOK)
	var fail atomic.Bool
	var dials atomic.Int64
	clock := struct {
		sync.Mutex
		t time.Time
	}{t: time.Unix(1e9, 0)}
	now := func() time.Time { clock.Lock(); defer clock.Unlock(); return clock.t }
	advance := func(d time.Duration) { clock.Lock(); clock.t = clock.t.Add(d); clock.Unlock() }
	o := quick()
	o.Backoff = backoff.Immediate{}
	o.BreakerThreshold = 3
	o.BreakerOpenFor = time.Minute
	o.Now = now
	o.Dial = func(ctx context.Context, network, a string) (net.Conn, error) {
		dials.Add(1)
		if fail.Load() {
			return nil, errors.New("connection refused (test)")
		}
		var nd net.Dialer
		return nd.DialContext(ctx, network, a)
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fail.Store(true)
	for i := 0; i < 3; i++ {
		if _, err := d.DialContext(ctx, "tcp", addr); err == nil || errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("dial %d: %v, want a dial error", i, err)
		}
	}
	if st := d.Stats(addr); st.Breaker != "open" {
		t.Fatalf("after 3 failures breaker %q, want open", st.Breaker)
	}
	for i := 0; i < 5; i++ {
		if _, err := d.DialContext(ctx, "tcp", addr); !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("dial while open: %v, want ErrCircuitOpen", err)
		}
	}
	if n := dials.Load(); n != 3 {
		t.Fatalf("%d network dials, want 3 (open breaker must not dial)", n)
	}
	advance(time.Minute + time.Second)
	// The probe fails: open again.
	if _, err := d.DialContext(ctx, "tcp", addr); err == nil || errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("probe: %v, want a dial error", err)
	}
	if st := d.Stats(addr); st.Breaker != "open" {
		t.Fatalf("after failed probe breaker %q, want open", st.Breaker)
	}
	advance(time.Minute + time.Second)
	fail.Store(false)
	probe, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if st := d.Stats(addr); st.Breaker != "half-open" {
		t.Fatalf("during probe breaker %q, want half-open", st.Breaker)
	}
	if _, err := d.DialContext(ctx, "tcp", addr); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("second dial during probe: %v, want ErrCircuitOpen", err)
	}
	if _, err := handshake(t, probe); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(addr); st.Breaker != "closed" {
		t.Fatalf("after probe handshake breaker %q, want closed", st.Breaker)
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial after close: %v", err)
	}
	c.Close()
	probe.Close()
}

// TestRateLimitShared: two users of one Dialer share the per-target
// bucket; a dial that would wait past its deadline is refused.
func TestRateLimitShared(t *testing.T) {
	addr := server(t, answerOK)
	o := quick()
	o.Rate, o.Burst = 2, 3
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				c, err := d.DialContext(ctx, "tcp", addr)
				cancel()
				switch {
				case err == nil:
					ok.Add(1)
					c.Close()
				case errors.Is(err, ErrRateLimited):
					limited.Add(1)
				default:
					t.Errorf("dial: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	// Burst 3 plus at most one more token in the short run time.
	if n := ok.Load(); n < 3 || n > 5 {
		t.Errorf("%d dials got through, want the burst of 3 (+ refill)", n)
	}
	if limited.Load() == 0 {
		t.Error("no dial was rate limited")
	}
	if st := d.Stats(addr); st.Dials != int(ok.Load()) {
		t.Errorf("Dials %d != successful dials %d: limited dials must not reach the network", st.Dials, ok.Load())
	}
	// Another target has its own bucket.
	addr2 := server(t, answerOK)
	c, err := d.DialContext(context.Background(), "tcp", addr2)
	if err != nil {
		t.Fatalf("other target: %v", err)
	}
	c.Close()
}

// TestFirstConnectSpread: a burst of first dials is spread over the window.
func TestFirstConnectSpread(t *testing.T) {
	addr := server(t, answerOK)
	var mu sync.Mutex
	var waits []time.Duration
	o := quick()
	o.FirstConnectWindow = 400 * time.Millisecond
	o.Rand = rand.New(rand.NewPCG(1, 2))
	o.OnEvent = func(e Event) {
		if e.Kind == EventDial {
			mu.Lock()
			waits = append(waits, e.Delay)
			mu.Unlock()
		}
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.DialContext(context.Background(), "tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			c.Close()
		}()
	}
	wg.Wait()
	// The dials' waits, not their wall-clock times: a stall of the test
	// process would bunch the timers' firing, not the dialer's decisions.
	lo, hi := spanOf(t, &mu, waits)
	if hi-lo < 100*time.Millisecond || hi >= 400*time.Millisecond {
		t.Errorf("20 first dials held back [%s, %s], want spread over most of the 400ms window", lo, hi)
	}
}

// spanOf returns the least and the largest of the waits (under mu).
func spanOf(t *testing.T, mu *sync.Mutex, waits []time.Duration) (lo, hi time.Duration) {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if len(waits) == 0 {
		t.Fatal("no dial events")
	}
	lo, hi = waits[0], waits[0]
	for _, w := range waits {
		lo, hi = min(lo, w), max(hi, w)
	}
	return lo, hi
}

// TestReconnectSpreadAfterStableLoss: losing a healthy connection (server
// restart, CLIENT KILL) is no failure — the backoff stays reset — but the
// redials that follow are spread over ReconnectWindow, since every client
// of the server lost its connection in the same instant.
func TestReconnectSpreadAfterStableLoss(t *testing.T) {
	var mu sync.Mutex
	var srv []net.Conn
	addr := server(t, func(c net.Conn) {
		mu.Lock()
		srv = append(srv, c)
		mu.Unlock()
		answerOK(c)
	})
	var waits []time.Duration
	o := quick()
	o.StableAfter = 50 * time.Millisecond
	o.ReconnectWindow = 400 * time.Millisecond
	o.Rand = rand.New(rand.NewPCG(1, 2))
	o.OnEvent = func(e Event) {
		if e.Kind == EventDial {
			mu.Lock()
			waits = append(waits, e.Delay)
			mu.Unlock()
		}
	}
	d, c := dialWith(t, o, addr)
	if _, err := handshake(t, c); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "connection stable", func() bool { return d.Stats(addr).Healthy == 1 })
	mu.Lock()
	srv[0].Close() // the server drops the healthy connection
	waits = nil
	mu.Unlock()
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err == nil {
		t.Fatal("read after server close succeeded")
	}
	c.Close()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.DialContext(context.Background(), "tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			c.Close()
		}()
	}
	wg.Wait()
	if st := d.Stats(addr); st.Failures != 0 {
		t.Errorf("losing a healthy connection counted as a failure: %+v", st)
	}
	lo, hi := spanOf(t, &mu, waits)
	if hi-lo < 100*time.Millisecond || hi >= 400*time.Millisecond {
		t.Errorf("20 redials held back [%s, %s], want spread over most of the 400ms window", lo, hi)
	}
}

// TestFirstReplyHeldBack: a rejection split across TCP segments is still
// recognised, and ordinary replies pass through intact, whatever the
// segmenting.
func TestFirstReplyHeldBack(t *testing.T) {
	tests := []struct {
		name     string
		segments []string
		overload bool
	}{
		{"split rejection", []string{"-ERR max num", "ber of clients reached\r\n"}, true},
		{"byte by byte", strings.Split("-ERR max number of clients reached\r\n", ""), true},
		{"split OK", []string{"+O", "K\r\n+PONG\r\n"}, false},
		{"error lookalike", []string{"-ERR max", "imum\r\n", "+OK\r\n"}, false},
		{"big first reply", []string{"$3000\r\n" + strings.Repeat("x", 3000) + "\r\n"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := server(t, func(c net.Conn) {
				defer c.Close()
				for _, s := range tt.segments {
					if _, err := c.Write([]byte(s)); err != nil {
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
				time.Sleep(100 * time.Millisecond)
			})
			o := quick()
			o.BreakerThreshold = -1
			d, c := dialWith(t, o, addr)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if tt.overload {
				if !errors.Is(err, ErrOverloaded) || len(got) != 0 {
					t.Fatalf("read %q, %v; want no data and ErrOverloaded", got, err)
				}
				if st := d.Stats(addr); st.Overloads != 1 {
					t.Fatalf("stats %+v, want 1 overload", st)
				}
				return
			}
			if want := strings.Join(tt.segments, ""); string(got) != want || err != nil {
				t.Fatalf("read %q, %v; want %q intact", got, err, want)
			}
			if st := d.Stats(addr); st.Overloads != 0 {
				t.Fatalf("stats %+v, want no overload", st)
			}
		})
	}
}
