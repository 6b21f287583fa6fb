//go:build linux

package checklist

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TestCTGetRequest compares the encoded tuple with what conntrack-tools
// 1.4.7 sends for `conntrack -G -p tcp --src 127.0.0.1 --dst 127.0.0.1
// --sport 45678 --dport 7777` (captured with strace).
func TestCTGetRequest(t *testing.T) {
	m, err := ctGetRequest(&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 45678}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7777})
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Type != 0x101 || m.Header.Flags != netlink.Request {
		t.Errorf("header %+v", m.Header)
	}
	want := append([]byte{unix.AF_INET, 0, 0, 0, 52, 0, 1, 0x80},
		"\x14\x00\x01\x80\x08\x00\x01\x00\x7f\x00\x00\x01\x08\x00\x02\x00\x7f\x00\x00\x01\x1c\x00\x02\x80\x05\x00\x01\x00\x06\x00\x00\x00\x06\x00\x02\x00\xb2\x6e\x00\x00\x06\x00\x03\x00\x1e\x61\x00\x00"...)
	if !bytes.Equal(m.Data, want) {
		t.Errorf("request\n got % x\nwant % x", m.Data, want)
	}
	m6, err := ctGetRequest(&net.TCPAddr{IP: net.ParseIP("::1"), Port: 1}, &net.TCPAddr{IP: net.ParseIP("::1"), Port: 2})
	if err != nil || m6.Data[0] != unix.AF_INET6 {
		t.Errorf("IPv6 request family %v, %v", m6.Data[0], err)
	}
}

func nlmsg(typ netlink.HeaderType, flags netlink.HeaderFlags, seq uint32, data []byte) []byte {
	m := netlink.Message{Header: netlink.Header{Length: uint32(unix.NLMSG_HDRLEN + len(data)), Type: typ, Flags: flags, Sequence: seq}, Data: data}
	b, err := m.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

func errno(e unix.Errno) []byte {
	return binary.NativeEndian.AppendUint32(make([]byte, 0, 20), uint32(-int32(e)))
}

func TestParseCTReply(t *testing.T) {
	cases := []struct {
		name                string
		b                   []byte
		tracked, done, fail bool
	}{
		{"found (multi, no done)", nlmsg(0x100, netlink.Multi, 7, make([]byte, 20)), true, true, false},
		{"not found", nlmsg(netlink.Error, 0, 7, errno(unix.ENOENT)), false, true, false},
		{"ack", nlmsg(netlink.Error, 0, 7, errno(0)), false, true, false},
		{"permission", nlmsg(netlink.Error, 0, 7, errno(unix.EPERM)), false, true, true},
		{"other sequence", nlmsg(0x100, 0, 8, nil), false, false, false},
		{"short error", nlmsg(netlink.Error, 0, 7, nil), false, true, true},
		{"truncated", []byte{200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, false, true, true},
	}
	for _, c := range cases {
		tracked, done, err := parseCTReply(c.b, 7)
		if tracked != c.tracked || done != c.done || (err != nil) != c.fail {
			t.Errorf("%s: tracked %v done %v err %v", c.name, tracked, done, err)
		}
	}
}

func FuzzParseCTReply(f *testing.F) {
	f.Add(nlmsg(0x100, netlink.Multi, 7, make([]byte, 20)))
	f.Add(nlmsg(netlink.Error, 0, 7, errno(unix.ENOENT)))
	f.Fuzz(func(t *testing.T, b []byte) {
		tracked, _, err := parseCTReply(b, 7)
		if tracked && err != nil {
			t.Fatal("tracked with error")
		}
	})
}
