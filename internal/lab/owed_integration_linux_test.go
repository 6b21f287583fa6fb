package lab

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/dialer"
)

// TestIntegrationLateInfoReply: a stormguard instance whose INFO read
// times out (the server stopped by SIGSTOP past the read's timeout)
// keeps its connection: the late reply is taken while idle or before the
// next PING's +PONG, as a pipelined client matches replies in order, and
// the dialer sees no loss. Before, the late reply surfaced while idle as
// unsolicited data: a failed command and a redial that only the
// stormguard fleet paid on a slow server.
func TestIntegrationLateInfoReply(t *testing.T) {
	sb := newServer(t, 128)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, viaDialer := range []bool{false, true} {
		t.Run("dialer="+strconv.FormatBool(viaDialer), func(t *testing.T) {
			var lost atomic.Int64
			d, err := dialer.New(dialer.Options{
				Dial: func(ctx context.Context, _, _ string) (net.Conn, error) { return sb.Dial(ctx) },
				OnEvent: func(e dialer.Event) {
					if e.Kind == dialer.EventConnLost {
						lost.Add(1)
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			var c net.Conn
			if viaDialer {
				c, err = d.DialContext(ctx, "tcp", sb.Addr())
			} else {
				c, err = sb.Dial(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rc := &rawConn{c: c, r: bufio.NewReader(c)}
			if err := rc.ping(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			// A stopped server cannot answer: the INFO read times out
			// whatever the machine's load, and the reply comes once it
			// continues.
			if err := sb.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			observer(d, sb.Addr(), 200*time.Millisecond)(rc)
			if err := sb.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			if rc.owed != 1 {
				t.Fatalf("after an INFO read that timed out (stopped server): %d replies owed, want 1", rc.owed)
			}
			// The reply comes while idle or, on a slow machine, after;
			// both are fine.
			if err := rc.idle(ctx, 2*time.Second); err != nil {
				t.Fatalf("idle after the late INFO: %v", err)
			}
			if err := rc.ping(10 * time.Second); err != nil {
				t.Fatalf("PING after the late INFO: %v", err)
			}
			if rc.owed != 0 || lost.Load() != 0 {
				t.Errorf("after the next PING: %d replies owed, %d losses reported to the dialer; want 0, 0", rc.owed, lost.Load())
			}
		})
	}
}
