//go:build linux

package dialer

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpState is c's kernel TCP state (TCP_INFO), -1 if unreadable.
func tcpState(c net.Conn) int {
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return -1
	}
	state := -1
	_ = raw.Control(func(fd uintptr) {
		if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			state = int(ti.State)
		}
	})
	return state
}

// TestClosedAgoFromKernel, against the real kernel on loopback: after
// the server's FIN, closedAgo is at least the time this test waited
// before reading (the FIN was in before it started waiting); after a
// reset, and for a conn without a socket, it is 0.
func TestClosedAgoFromKernel(t *testing.T) {
	const late = 300 * time.Millisecond
	for _, reset := range []bool{false, true} {
		closed := make(chan struct{})
		addr := server(t, func(c net.Conn) {
			// Wait for the client's byte: a reset before its connect
			// returned would fail the dial.
			_, _ = c.Read(make([]byte, 1))
			if reset {
				_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
			}
			c.Close()
			close(closed)
		})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{'\n'}); err != nil {
			t.Fatal(err)
		}
		<-closed
		if !reset {
			waitFor(t, "CLOSE_WAIT", func() bool { return tcpState(c) == tcpCloseWait })
		} else {
			time.Sleep(50 * time.Millisecond) // the RST's way in
		}
		time.Sleep(late)
		_, rerr := c.Read(make([]byte, 1))
		ago := closedAgo(c)
		c.Close()
		switch {
		case !reset && (!errors.Is(rerr, io.EOF) || ago < late-10*time.Millisecond):
			t.Errorf("FIN: read %v, closedAgo %s, want EOF and at least %s (jiffies)", rerr, ago, late)
		case reset && ago != 0:
			t.Errorf("RST: read %v, closedAgo %s, want 0 (a reset leaves no mark)", rerr, ago)
		}
	}
	if got := closedAgo(nil); got != 0 {
		t.Errorf("closedAgo(nil) = %s, want 0", got)
	}
}

// TestDialerDatesLossToClose: through the Dialer, a stable connection
// whose EOF is read late starts its target's episode at the server's
// close (Stats.NoticeLag), so the next dial waits only for what is left
// of the window.
func TestDialerDatesLossToClose(t *testing.T) {
	const late = 300 * time.Millisecond
	closeNow := make(chan struct{})
	addr := server(t, func(c net.Conn) {
		buf := make([]byte, 64)
		if _, err := c.Read(buf); err == nil {
			_, _ = c.Write([]byte("+OK\r\n"))
		}
		<-closeNow
		c.Close()
	})
	o := quick()
	o.ReconnectWindow, o.FleetSize, o.AcceptRate, o.DisconnectCost = 0, 4000, 2000, -1 // a 2 s window
	o.ConnectCost = -1
	d, c := dialWith(t, o, addr)
	defer c.Close()
	if line, err := handshake(t, c); err != nil || line != "+OK\r\n" {
		t.Fatalf("handshake: %q %v", line, err)
	}
	waitFor(t, "stable", func() bool { return d.Stats(addr).Healthy == 1 })
	close(closeNow)
	waitFor(t, "CLOSE_WAIT", func() bool { return tcpState(c.(*Conn).Conn) == tcpCloseWait })
	time.Sleep(late)
	_ = c.SetReadDeadline(time.Time{})
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the server's close: %v, want EOF", err)
	}
	st := d.Stats(addr)
	if st.Window != 2*time.Second {
		t.Fatalf("window %s, want 2s", st.Window)
	}
	if st.NoticeLag < late-10*time.Millisecond || st.NoticeLag > st.Window/4 {
		t.Errorf("NoticeLag %s, want at least the %s the read came late, at most a quarter of the 2s episode", st.NoticeLag, late)
	}
}
