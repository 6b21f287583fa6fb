package serve

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// openStream connects to srv, asks for /api/v1/stream with a 4 KiB receive
// buffer (so the server's writes fill it quickly once the client stops
// reading) and returns the connection and the response status.
func openStream(t *testing.T, addr string) (net.Conn, int) {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read status: %v", err)
	}
	var code int
	if _, err := fmt.Sscanf(line, "HTTP/1.1 %d", &code); err != nil {
		t.Fatalf("status line %q: %v", line, err)
	}
	return c, code
}

func (h *Hub) subscribers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs)
}

// TestStreamBounded: 300 clients open /api/v1/stream and never read. The
// first MaxStreams get a stream, every other one 503; /metrics keeps
// answering; once events pile up the hub drops every non-reader, and their
// slots come back (the write deadline ends the stuck writes).
func TestStreamBounded(t *testing.T) {
	h := NewHub([]string{"listenq"}, 10, 10)
	h.Publish(&sample.Sample{Target: "t:1", Time: time.Now()}, State{Name: "calm"}, "", nil)
	const limit, clients = 16, 300
	const writeTimeout = time.Second
	srv := httptest.NewServer(Handler(h, Options{MaxStreams: limit, streamWriteTimeout: writeTimeout}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	ok, refused := 0, 0
	var refusedConn net.Conn
	// Closed before srv.Close (which waits for open streams) even when
	// the test fails half way.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < clients; i++ {
		c, code := openStream(t, addr)
		conns = append(conns, c)
		switch code {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
			refused++
			refusedConn = c
		default:
			t.Fatalf("client %d: status %d", i, code)
		}
	}
	if ok != limit || refused != clients-limit {
		t.Fatalf("%d streams, %d refused; want %d and %d", ok, refused, limit, clients-limit)
	}
	// The server closes a refused connection (an idle connection per
	// refused client would cost the agent memory): the client reads EOF.
	_ = refusedConn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, refusedConn); err != nil {
		t.Fatalf("refused connection not closed by the server: %v", err)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics with %d stuck streams: %v %v", limit, resp, err)
	}
	resp.Body.Close()

	// Events of 16 KiB: the stuck clients' socket buffers fill, their
	// handlers block in Write, their queues fill and the hub drops them.
	big := strings.Repeat("x", 16<<10)
	deadline := time.Now().Add(30 * time.Second)
	for h.subscribers() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d non-reading subscribers still held after 30s of events", h.subscribers())
		}
		h.PublishEvent(map[string]string{"type": "test", "pad": big})
		time.Sleep(time.Millisecond)
	}
	// The handlers end at their write deadline and free the slots.
	deadline = time.Now().Add(2*writeTimeout + 20*time.Second)
	for {
		c, code := openStream(t, addr)
		c.Close() // before srv.Close, which waits for open streams
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stream slot came back after the stuck clients were dropped (status %d)", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
