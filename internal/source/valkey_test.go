package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// topRand draws the top of every jitter range.
type topRand struct{}

func (topRand) Float64() float64 { return 1 }

// zeroRand draws the bottom of every jitter range.
type zeroRand struct{}

func (zeroRand) Float64() float64 { return 0 }

func TestRedialBackoff(t *testing.T) {
	cfg := defaultValkeyConfig()
	cfg.BackoffBase, cfg.BackoffCap = 100*time.Millisecond, 5*time.Second
	s := newValkeySource(Target{}, cfg, "", nil)
	s.rnd = topRand{}
	s.down = &connectError{msg: "refused", cause: syscall.ECONNREFUSED}
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {6, 3200 * time.Millisecond}, {7, 5 * time.Second}, {1000, 5 * time.Second}} {
		s.failures = tt.n
		if got := s.backoffLocked(); got != tt.want {
			t.Errorf("after %d failures the longest wait is %s, want %s", tt.n, got, tt.want)
		}
	}
}

func TestAuthFailureWaitsLonger(t *testing.T) {
	s := newValkeySource(Target{}, defaultValkeyConfig(), "", nil)
	s.rnd = zeroRand{}
	s.failures = 1
	s.down = &connectError{msg: "refused", cause: syscall.ECONNREFUSED}
	if d := s.backoffLocked(); d != 0 {
		t.Fatalf("refused: delay %s, want the jittered 0", d)
	}
	s.down = &connectError{msg: "authentication failed", auth: true}
	if d := s.backoffLocked(); d != s.cfg.AuthRetry {
		t.Fatalf("auth failure: delay %s, want AuthRetry %s", d, s.cfg.AuthRetry)
	}
}

func TestDescribeConnectErr(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"refused", refused, "connect 10.0.0.1:6379: connection refused"},
		{"unreachable", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}, "connect 10.0.0.1:6379: network is unreachable"},
		{"dial timeout", timeout, "connect 10.0.0.1:6379: no answer within 2s"},
		{"handshake timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, "connect 10.0.0.1:6379: no answer within 2s"},
		{"dns", &net.DNSError{Err: "no such host", Name: "nope"}, "connect 10.0.0.1:6379: cannot resolve host: no such host"},
		{"eof in handshake", io.EOF, "connect 10.0.0.1:6379: connection closed by the server during the handshake"},
		{"reset in handshake", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "connect 10.0.0.1:6379: connection reset by the server during the handshake (a TLS port"},
		{"reset at connect", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNRESET)}, "connect 10.0.0.1:6379: connection reset by peer"},
		{"server error line then EOF", &serverSaid{line: "ERR max number of clients reached", err: io.EOF}, "connect 10.0.0.1:6379: refused by Valkey: ERR max number of clients reached"},
		{"tls", fmt.Errorf("TLS handshake: %w", errors.New("x509: certificate signed by unknown authority")), "connect 10.0.0.1:6379: TLS handshake: x509: certificate signed by unknown authority"},
		{"tls unanswered", fmt.Errorf("TLS handshake: %w: %w", valkeyconn.ErrTLSNoAnswer, os.ErrDeadlineExceeded), "connect 10.0.0.1:6379: no answer within 2s (a plaintext port reached with valkeys://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describeConnectErr("10.0.0.1:6379", "", false, 2*time.Second, tt.err)
			if !strings.HasPrefix(got.Error(), tt.want) {
				t.Fatalf("got %q, want prefix %q", got.Error(), tt.want)
			}
			if !errors.Is(got, tt.err) {
				t.Fatalf("cause not kept: %v", got)
			}
			if errors.Is(got, ErrValkeyAuth) {
				t.Fatal("network error must not match ErrValkeyAuth")
			}
		})
	}
}

func TestValkeyDownError(t *testing.T) {
	ce := &connectError{msg: "authentication failed at h:1 for user \"u\": WRONGPASS x", auth: true}
	err := error(&valkeyDown{reason: ce.msg + "; next retry in 30s", cause: ce})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrValkeyAuth) {
		t.Fatalf("errors.Is: unavailable %v, auth %v", errors.Is(err, ErrUnavailable), errors.Is(err, ErrValkeyAuth))
	}
	if want := "unavailable: authentication failed"; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("%q lacks prefix %q", err, want)
	}
	// Classify (used by Open for failed openers) keeps it as is.
	if Classify("open valkey", err) != err {
		t.Fatal("Classify rewrapped an Unavailable")
	}
}

// A command that samples and exits reports the reason without the retry
// schedule it will not follow.
func TestOneShotReason(t *testing.T) {
	for in, want := range map[string]string{
		"unavailable: connect h:1: connection refused; next retry in 75ms": "connect h:1: connection refused",
		"unavailable: connect h:1: no answer within 2s; retrying now":      "connect h:1: no answer within 2s",
		"unavailable: not connected to h:1":                                "not connected to h:1",
		"stale: no reading this interval":                                  "stale: no reading this interval",
	} {
		if got := OneShotReason(in); got != want {
			t.Errorf("OneShotReason(%q) = %q, want %q", in, got, want)
		}
	}
	if got := WithoutRetry("unavailable: connect h:1: refused; next retry in 3ms"); got != "unavailable: connect h:1: refused" {
		t.Errorf("WithoutRetry = %q", got)
	}
	err := (&valkeyDown{reason: "connect h:1: refused" + retryNext + "1s"}).Error()
	if got := OneShotReason(err); got != "connect h:1: refused" {
		t.Errorf("OneShotReason(valkeyDown) = %q", got)
	}
}

func TestLibVersion(t *testing.T) {
	tests := map[string]string{
		"":                  "dev",
		"dev":               "dev",
		"v0.3.1-4-gabc123":  "v0.3.1-4-gabc123",
		"1.0 beta\n":        "1.0_beta_",
		"b724032-dirty+x_y": "b724032-dirty+x_y",
	}
	for in, want := range tests {
		if got := libVersion(in); got != want {
			t.Errorf("libVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestValkeyUnreachableBacksOff collects far more often than the backoff
// allows against a closed loopback port: dials must follow the backoff, not
// the collects, and every collect must answer at once with the reason.
func TestValkeyUnreachableBacksOff(t *testing.T) {
	cfg := defaultValkeyConfig()
	cfg.BackoffBase, cfg.BackoffCap = 100*time.Millisecond, 400*time.Millisecond
	target := Target{Addr: addr.Addr{Host: "127.0.0.1", Port: sandboxtest.FreePort(t)}}
	s := openValkeyWith(context.Background(), Options{Target: target}, cfg)
	defer s.Close()

	const collects = 60
	start := time.Now()
	for i := 0; i < collects; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		var out sample.Sample
		t0 := time.Now()
		err := s.Collect(ctx, &out)
		cancel()
		if err == nil || out.Valkey != nil {
			t.Fatalf("collect %d: err %v, valkey %+v; want unavailable and nil", i, err, out.Valkey)
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("collect %d: %v does not unwrap to ErrUnavailable", i, err)
		}
		if !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("collect %d: %q does not name the cause", i, err)
		}
		// A refused dial fails at once; the bound only catches a
		// collect that ignores its deadline and hangs.
		if d := time.Since(t0); d > 10*time.Second {
			t.Fatalf("collect %d took %s; must answer within its deadline", i, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	s.mu.Lock()
	dials, live := s.dials, s.live
	s.mu.Unlock()
	// Mean full-jitter delay at the 400ms cap is 200ms; allow for the
	// first, shorter steps and a fast scheduler, but a dial per collect
	// (60 in well under a second) must be far off. The bound scales with
	// the time the loop took, so a loaded machine cannot fail it.
	maxDials := uint64(elapsed/(50*time.Millisecond)) + 5
	if dials < 2 || dials > maxDials {
		t.Fatalf("%d dials in %s over %d collects; want 2..%d (backoff, not one per collect)", dials, elapsed.Round(time.Millisecond), collects, maxDials)
	}
	if live != 0 {
		t.Fatalf("%d sockets still counted open", live)
	}
	t.Logf("%d collects in %s made %d dials", collects, elapsed.Round(time.Millisecond), dials)
}

func TestValkeyCollectAfterClose(t *testing.T) {
	target := Target{Addr: addr.Addr{Host: "127.0.0.1", Port: sandboxtest.FreePort(t)}}
	s := openValkeyWith(context.Background(), Options{Target: target}, defaultValkeyConfig())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	err := s.Collect(context.Background(), &sample.Sample{})
	if !errors.Is(err, errSourceClosed) {
		t.Fatalf("Collect after Close = %v, want errSourceClosed", err)
	}
}
