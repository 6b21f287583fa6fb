package source

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/sample"
)

// TestListenqSharesTheSamplersClock: at an interval of 10 ms or less no
// 100 Hz poller runs beside the sampler (each sample's own read is the
// interval's peak); above it the poller runs. A listener of this process
// on loopback, read in this process's namespace.
func TestListenqSharesTheSamplersClock(t *testing.T) {
	a := loopbackListener(t)
	for _, tc := range []struct {
		interval time.Duration
		poller   bool
	}{{10 * time.Millisecond, false}, {5 * time.Millisecond, false}, {100 * time.Millisecond, true}, {0, true}} {
		src, err := openListenq(context.Background(), Options{Target: Target{Addr: a}, Interval: tc.interval})
		if err != nil {
			t.Fatalf("interval %v: %v", tc.interval, err)
		}
		l := src.(*listenq)
		if got := l.tick != nil; got != tc.poller {
			t.Errorf("interval %v: poller running %v, want %v", tc.interval, got, tc.poller)
		}
		if !tc.poller {
			var s sample.Sample
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := l.Collect(ctx, &s)
			cancel()
			if err != nil || s.Listen == nil || s.Listen.Polls != 1 || s.Listen.DepthMax == nil {
				t.Errorf("interval %v: listen %+v, err %v; want the sample's own read as the peak", tc.interval, s.Listen, err)
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
}

// loopbackListener listens on 127.0.0.1 in the test's own namespace until
// the test ends and returns the address, as a Target takes it.
func loopbackListener(t *testing.T) addr.Addr {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	a, err := addr.Parse(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestListenqCollectLooksUpKnownListeners: after a dump has found the
// listeners, Collect looks them up directly (no scan of the listening
// hash per sample), yet a listener that goes is missing from the very next
// sample and one added beside the known ones is counted by a later one.
func TestListenqCollectLooksUpKnownListeners(t *testing.T) {
	a := loopbackListener(t)
	src, err := openListenq(context.Background(), Options{Target: Target{Addr: a}, ListenPoll: -1})
	if err != nil {
		t.Fatal(err)
	}
	l := src.(*listenq)
	t.Cleanup(func() { l.Close() })
	collect := func() *sample.Sample {
		t.Helper()
		var s sample.Sample
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Collect(ctx, &s); err != nil && s.Listen == nil {
			t.Fatalf("collect: %v", err)
		}
		return &s
	}
	if s := collect(); s.Listen.Sockets != 1 {
		t.Fatalf("first sample: %d listeners, want 1", s.Listen.Sockets)
	}
	if s := collect(); s.Listen.Sockets != 1 || !l.collLR.useExact {
		t.Fatalf("second sample: %d listeners, direct lookups %v; want 1 by lookup", s.Listen.Sockets, l.collLR.useExact)
	}

	// A second listener on the same port (another loopback address).
	ln2, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.2", strconv.Itoa(a.Port)))
	if err != nil {
		t.Fatalf("second listener on 127.0.0.2: %v", err)
	}
	defer ln2.Close()
	deadline := time.Now().Add(10 * time.Second)
	for collect().Listen.Sockets != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the added listener was never counted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	collect()
	if !l.collLR.useExact {
		t.Fatal("not back to direct lookups with two listeners")
	}
	ln2.Close()
	if s := collect(); s.Listen.Sockets != 1 {
		t.Fatalf("sample after a listener closed: %d listeners, want 1", s.Listen.Sockets)
	}
}
