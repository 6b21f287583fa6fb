package discover

import (
	"net"
	"reflect"
	"strings"
	"testing"
)

const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1001 1 0000000000000000 100 0 0 10 0
   1: 00000000:42FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0100007F:18EB 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000   999        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2000 1 0000000000000000 100 0 0 10 0
`

const procNetTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1004 1 0000000000000000 100 0 0 10 0
`

func TestParseProcNetTCP(t *testing.T) {
	ls, err := ParseProcNetTCP(strings.NewReader(procNetTCP))
	if err != nil {
		t.Fatal(err)
	}
	want := []Listener{
		{net.IPv4(127, 0, 0, 1).To4(), 6379, 1001},
		{net.IPv4zero.To4(), 17147, 1002},
		{net.IPv4zero.To4(), 22, 2000},
	}
	if len(ls) != len(want) {
		t.Fatalf("got %d listeners: %+v", len(ls), ls)
	}
	for i := range want {
		if !ls[i].IP.Equal(want[i].IP) || ls[i].Port != want[i].Port || ls[i].Inode != want[i].Inode {
			t.Errorf("listener %d = %+v, want %+v", i, ls[i], want[i])
		}
	}
	ls6, err := ParseProcNetTCP(strings.NewReader(procNetTCP6))
	if err != nil || len(ls6) != 1 || !ls6[0].IP.Equal(net.IPv6loopback) || ls6[0].Port != 6379 {
		t.Fatalf("tcp6: %+v %v", ls6, err)
	}
}

func TestClientAddrs(t *testing.T) {
	ls, _ := ParseProcNetTCP(strings.NewReader(procNetTCP))
	ls6, _ := ParseProcNetTCP(strings.NewReader(procNetTCP6))
	ls = append(ls, ls6...)
	// 17147 (0x42FB) is not 6379+10000, so it is a client port, not a cluster bus.
	got := clientAddrs(ls, map[uint64]bool{1001: true, 1002: true, 1004: true})
	want := []string{"127.0.0.1:6379", "127.0.0.1:17147"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("clientAddrs = %v, want %v (ssh's port 22 is another process's)", got, want)
	}
	bus := []Listener{{net.IPv4zero, 7000, 1}, {net.IPv4zero, 17000, 2}}
	if got := clientAddrs(bus, map[uint64]bool{1: true, 2: true}); !reflect.DeepEqual(got, []string{"127.0.0.1:7000"}) {
		t.Fatalf("cluster bus not left out: %v", got)
	}
	if n := otherPorts(ls, map[uint64]bool{1001: true, 1002: true, 1004: true}); n != 1 {
		t.Errorf("other listeners %d, want 1 (ssh)", n)
	}
	if n := otherPorts(bus, map[uint64]bool{1: true, 2: true}); n != 0 {
		t.Errorf("other listeners %d, want 0: the bus port is the server's own", n)
	}
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add(procNetTCP)
	f.Add(procNetTCP6)
	f.Add("x\n 0: zz:zz 0:0 0A a b c d e f\n")
	f.Fuzz(func(t *testing.T, s string) {
		ls, _ := ParseProcNetTCP(strings.NewReader(s))
		for _, l := range ls {
			if l.Port < 0 || l.Port > 65535 || (len(l.IP) != 4 && len(l.IP) != 16) {
				t.Fatalf("bad listener %+v", l)
			}
		}
	})
}
