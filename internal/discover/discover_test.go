package discover

import (
	"net"
	"reflect"
	"testing"

	"github.com/stormguard/stormguard/internal/procnet"
)

func TestClientAddrs(t *testing.T) {
	ls := []procnet.Listener{
		{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 6379, Inode: 1001},
		{IP: net.IPv4zero.To4(), Port: 17147, Inode: 1002},
		{IP: net.IPv4zero.To4(), Port: 22, Inode: 2000},
		{IP: net.IPv6loopback, Port: 6379, Inode: 1004},
	}
	// 17147 (0x42FB) is not 6379+10000, so it is a client port, not a cluster bus.
	got := clientAddrs(ls, map[uint64]bool{1001: true, 1002: true, 1004: true})
	want := []string{"127.0.0.1:6379", "127.0.0.1:17147"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("clientAddrs = %v, want %v (ssh's port 22 is another process's)", got, want)
	}
	bus := []procnet.Listener{{IP: net.IPv4zero, Port: 7000, Inode: 1}, {IP: net.IPv4zero, Port: 17000, Inode: 2}}
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
