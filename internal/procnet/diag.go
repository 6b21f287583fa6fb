package procnet

import (
	"encoding/binary"
	"net"
)

// sock_diag wire format for LISTEN dumps (include/uapi/linux/inet_diag.h):
// a request is inet_diag_req_v2 (56 bytes), each reply an inet_diag_msg
// (72 bytes); ports are network order, everything else host order.
const (
	sockDiagByFamily = 20
	ipprotoTCP       = 6
	inetDiagMsgLen   = 72
	afInet           = 2
)

// listenRequest is the inet_diag_req_v2 of a dump of every TCP LISTEN
// socket of family fam, without extensions (nothing per socket beyond the
// fixed part is needed).
func listenRequest(fam uint8) []byte {
	b := make([]byte, 56)
	b[0], b[1] = fam, ipprotoTCP
	binary.NativeEndian.PutUint32(b[4:], 1<<tcpListen)
	return b
}

// parseDiagListener decodes one inet_diag_msg: family at 0, state at 1,
// source port at 4 (network order), source address at 8, rqueue at 56,
// inode at 68. IPv4 addresses take the first 4 bytes of the address field.
func parseDiagListener(b []byte) (Listener, bool) {
	if len(b) < inetDiagMsgLen || b[1] != tcpListen {
		return Listener{}, false
	}
	ne := binary.NativeEndian
	var ip net.IP
	if b[0] == afInet {
		ip = net.IPv4(b[8], b[9], b[10], b[11]).To4()
	} else {
		ip = make(net.IP, net.IPv6len)
		copy(ip, b[8:24])
		if v4 := ip.To4(); v4 != nil && !ip.Equal(net.IPv6zero) && !ip.Equal(net.IPv6loopback) {
			ip = v4 // an IPv4-mapped address
		}
	}
	return Listener{IP: ip, Port: int(binary.BigEndian.Uint16(b[4:])), Inode: uint64(ne.Uint32(b[68:])), Queue: uint64(ne.Uint32(b[56:]))}, true
}
