package procnet

import (
	"encoding/binary"
	"net"
	"testing"
)

// diagMsg builds an inet_diag_msg as the kernel sends it.
func diagMsg(fam, state uint8, port uint16, src []byte, rq, inode uint32) []byte {
	b := make([]byte, inetDiagMsgLen)
	b[0], b[1] = fam, state
	binary.BigEndian.PutUint16(b[4:], port)
	copy(b[8:24], src)
	binary.NativeEndian.PutUint32(b[56:], rq)
	binary.NativeEndian.PutUint32(b[68:], inode)
	return b
}

func TestParseDiagListener(t *testing.T) {
	mapped := net.ParseIP("::ffff:127.0.0.1")
	tests := []struct {
		name string
		msg  []byte
		ok   bool
		want Listener
	}{
		{"ipv4", diagMsg(2, tcpListen, 6379, []byte{127, 0, 0, 1}, 5, 1001), true, Listener{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 6379, Inode: 1001, Queue: 5}},
		{"ipv6 loopback", diagMsg(10, tcpListen, 6379, net.IPv6loopback, 0, 1004), true, Listener{IP: net.IPv6loopback, Port: 6379, Inode: 1004}},
		{"ipv4-mapped", diagMsg(10, tcpListen, 7000, mapped, 0, 1005), true, Listener{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 7000, Inode: 1005}},
		{"not listening", diagMsg(2, 1, 6379, []byte{127, 0, 0, 1}, 0, 1), false, Listener{}},
		{"short", make([]byte, 40), false, Listener{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseDiagListener(tt.msg)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if ok && (!got.IP.Equal(tt.want.IP) || len(got.IP) != len(tt.want.IP) || got.Port != tt.want.Port || got.Inode != tt.want.Inode || got.Queue != tt.want.Queue) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseDiagListener(f *testing.F) {
	f.Add(diagMsg(2, tcpListen, 6379, []byte{127, 0, 0, 1}, 5, 1001))
	f.Add(diagMsg(10, tcpListen, 6379, net.IPv6loopback, 0, 1004))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, ok := parseDiagListener(b)
		if ok && (l.Port < 0 || l.Port > 65535 || (len(l.IP) != 4 && len(l.IP) != 16)) {
			t.Fatalf("bad listener %+v", l)
		}
	})
}
