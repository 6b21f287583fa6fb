//go:build linux

package dialer

import (
	"crypto/tls"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// closedAgo returns how long ago c's kernel socket received the peer's
// FIN, read from TCP_INFO, or 0 when that is not known: c is not a TCP
// socket (or a TLS connection over one), the socket is not in
// CLOSE_WAIT (the peer reset it, or we closed it too), or the getsockopt
// failed. Called when a Read returned EOF.
//
// In CLOSE_WAIT the last segment the kernel took with an acceptable ACK
// (tcpi_last_ack_recv, jiffies: 1–10 ms steps) is the FIN or a later ACK
// of data we sent after it, so the age is never more than the FIN's. A
// reset leaves no such mark (the socket is CLOSE, and its last ACK is the
// last reply's), hence 0 there.
func closedAgo(c net.Conn) time.Duration {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	var info *unix.TCPInfo
	var ierr error
	if err := raw.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil || info == nil {
		return 0
	}
	if info.State != tcpCloseWait {
		return 0
	}
	return time.Duration(info.Last_ack_recv) * time.Millisecond
}

// tcpCloseWait is TCP_CLOSE_WAIT in include/net/tcp_states.h.
const tcpCloseWait = 8
