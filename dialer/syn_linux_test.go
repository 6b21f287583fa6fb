package dialer

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/backoff"
)

// listenFull listens on loopback with an accept queue of one connection
// (listen backlog 0): once one connection waits in it, the kernel drops
// the next SYN (tcp_conn_request: ListenOverflows). It returns the
// listener and its socket's file (for queued).
func listenQueueOfOne(t *testing.T) (net.Listener, *os.File) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	t.Cleanup(func() { _ = f.Close() })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln, f
}

// queued is the listener's accept-queue length (TCP_INFO of a listening
// socket: tcpi_unacked).
func queued(t *testing.T, f *os.File) uint32 {
	t.Helper()
	ti, err := unix.GetsockoptTCPInfo(int(f.Fd()), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		t.Fatal(err)
	}
	return ti.Unacked
}

// poll waits until cond holds, failing the test after limit.
func poll(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSYNDeadlineKernel: against the real kernel, an attempt whose SYN
// meets a full accept queue gets no SYN-ACK (Linux drops it), is
// abandoned at its deadline and redialled within the same DialContext,
// which succeeds once the queue has room; the abandoned attempt leaves
// nothing in the accept queue (its SYN was dropped, its socket closed).
func TestSYNDeadlineKernel(t *testing.T) {
	ln, lf := listenQueueOfOne(t)
	addr := ln.Addr().String()
	// A frozen clock keeps the test inside the reconnect episode (the
	// waits and deadlines run on real timers).
	frozen := func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }
	d, err := New(Options{SYNDeadline: time.Second, Rate: -1, FirstConnectWindow: -1, BreakerThreshold: -1, ReconnectWindow: 50 * time.Millisecond,
		Backoff: backoff.Immediate{}, Now: frozen, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// A connection lost before its handshake (the server closes it):
	// an episode begins, and loopback's connect time is observed.
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after the server's close succeeded")
	}
	_ = c.Close()
	// Fill the accept queue.
	filler, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	poll(t, 5*time.Second, "the filler in the accept queue", func() bool { return queued(t, lf) == 1 })

	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := d.DialContext(context.Background(), "tcp", addr)
		done <- result{c, err}
	}()
	poll(t, 8*time.Second, "an abandoned attempt", func() bool {
		select {
		case r := <-done:
			t.Fatalf("DialContext returned (%v, %v) before any abandon: stats %+v, queued %d", r.c, r.err, d.Stats(addr), queued(t, lf))
		default:
		}
		return d.Stats(addr).AbandonedDials > 0
	})
	s, err = ln.Accept() // room for the redial (or its kernel retransmit)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	r := <-done
	if r.err != nil {
		t.Fatalf("DialContext after the abandon: %v", r.err)
	}
	defer r.c.Close()
	poll(t, 5*time.Second, "the redial in the accept queue", func() bool { return queued(t, lf) == 1 })
	s, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if n := queued(t, lf); n != 0 {
		t.Errorf("%d more connections queued: the abandoned attempt left one", n)
	}
	if st := d.Stats(addr); st.AbandonedDials != 1 || st.DialFailures != 0 {
		t.Errorf("stats %+v: want exactly one abandoned attempt and no failed dial", st)
	}
}
