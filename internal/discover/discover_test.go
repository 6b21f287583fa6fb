package discover

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
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

// procFixture writes a procfs-like tree with our own namespace and one
// valkey-server (PID 100) whose descriptors are the given socket inodes and
// whose namespace lists tcp.
func procFixture(t *testing.T, tcp string, inodes ...int) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"self/ns", "100/ns", "100/fd", "100/net"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(os.WriteFile(filepath.Join(dir, "self/ns/net"), nil, 0o644))
	must(os.WriteFile(filepath.Join(dir, "100/ns/net"), nil, 0o644))
	must(os.WriteFile(filepath.Join(dir, "100/comm"), []byte("valkey-server\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "100/stat"), []byte("100 (valkey-server) S 1 100 100 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 4 0 4242 1 1 1\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "100/net/tcp"), []byte(tcp), 0o644))
	setFDs(t, dir, inodes...)
	return dir
}

func setFDs(t *testing.T, dir string, inodes ...int) {
	t.Helper()
	fd := filepath.Join(dir, "100/fd")
	if err := os.RemoveAll(fd); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(fd, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, ino := range inodes {
		if err := os.Symlink(fmt.Sprintf("socket:[%d]", ino), filepath.Join(fd, strconv.Itoa(i+3))); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tcpValkey = "   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1001 1 0000000000000000 100 0 0 10 0\n"
	tcpOther  = "   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2000 1 0000000000000000 100 0 0 10 0\n"
)

// The memo answers a rescan without reading the descriptors while the
// namespace's listeners are the same, and inspects again when they change.
func TestScanMemo(t *testing.T) {
	dir := procFixture(t, tcpHeader+tcpValkey, 1001)
	sc := Scanner{Proc: dir, Memo: &Memo{}}
	scan := func() Server { return scanOne(t, sc) }
	first := scan()
	if !reflect.DeepEqual(first.Addrs, []string{"127.0.0.1:6379"}) || first.OtherListeners != 0 || first.NetNS == "" {
		t.Fatalf("first scan: %+v", first)
	}
	// The descriptors change but the listeners do not: the memo's answer
	// stands (without the memo the server would have no own listener).
	setFDs(t, dir)
	if got := scan(); !reflect.DeepEqual(got, first) {
		t.Fatalf("rescan with unchanged listeners: %+v, want %+v", got, first)
	}
	if got, _ := (Scanner{Proc: dir}).Scan(); len(got) != 0 {
		t.Fatalf("without a memo the fixture has no own listener: %+v", got)
	}
	// Another process starts listening in the namespace: inspected anew.
	setFDs(t, dir, 1001)
	if err := os.WriteFile(filepath.Join(dir, "100/net/tcp"), []byte(tcpHeader+tcpValkey+tcpOther), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := scan(); got.OtherListeners != 1 || !reflect.DeepEqual(got.Addrs, first.Addrs) {
		t.Fatalf("after a new listener: %+v", got)
	}
}

// Servers in other namespaces reached on loopback are named apart: by the
// namespace's `ip netns` name, else the hostname in their root (a pod's
// name), else the namespace inode; the scanner's own namespace and
// non-loopback addresses keep host:port.
func TestServerName(t *testing.T) {
	dir := procFixture(t, tcpHeader+tcpValkey, 1001)
	nsDir := t.TempDir()
	sc := Scanner{Proc: dir, NetNSDir: nsDir}
	scan := func() Server { return scanOne(t, sc) }
	s := scan()
	if want := fmt.Sprintf("127.0.0.1:6379@netns:%d", s.NetNSInode); s.Name("127.0.0.1:6379") != want {
		t.Errorf("no name known: %q, want %q", s.Name("127.0.0.1:6379"), want)
	}
	if got := s.Name("10.0.0.5:6379"); got != "10.0.0.5:6379" {
		t.Errorf("non-loopback address renamed: %q", got)
	}
	write := func(path, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "self/root/etc/hostname"), "node-1\n")
	write(filepath.Join(dir, "100/root/etc/hostname"), "node-1\n")
	if got := scan().Name("127.0.0.1:6379"); got != fmt.Sprintf("127.0.0.1:6379@netns:%d", s.NetNSInode) {
		t.Errorf("the host's own hostname names nothing: %q", got)
	}
	write(filepath.Join(dir, "100/root/etc/hostname"), "valkey-0\n")
	if got := scan().Name("127.0.0.1:6379"); got != "127.0.0.1:6379@valkey-0" {
		t.Errorf("pod hostname: %q", got)
	}
	if err := os.Link(filepath.Join(dir, "100/ns/net"), filepath.Join(nsDir, "blue")); err != nil {
		t.Fatal(err)
	}
	if got := scan().Name("127.0.0.1:6379"); got != "127.0.0.1:6379@blue" {
		t.Errorf("ip netns name: %q", got)
	}
	if got := (Server{}).Name("127.0.0.1:6379"); got != "127.0.0.1:6379" {
		t.Errorf("own namespace: %q", got)
	}
}

// scanOne scans once and wants exactly one server.
func scanOne(t *testing.T, sc Scanner) Server {
	t.Helper()
	s, err := sc.Scan()
	if err != nil || len(s) != 1 {
		t.Fatalf("scan: %v, %+v", err, s)
	}
	return s[0]
}
