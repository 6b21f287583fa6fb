package procnet

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:18EB 00000000:0000 0A 00000000:00000081 00:00000000 00000000   999        0 1001 1 0000000000000000 100 0 0 10 0
   1: 00000000:42FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0100007F:18EB 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000   999        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2000 1 0000000000000000 100 0 0 10 0
`

const procNetTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1004 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1B58 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1005 1 0000000000000000 100 0 0 10 0
`

// writeTree writes a procfs-like fixture: dir/net/tcp and, if tcp6 is
// not empty, dir/net/tcp6.
func writeTree(t *testing.T, tcp, tcp6 string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "net", "tcp"), []byte(tcp), 0o644); err != nil {
		t.Fatal(err)
	}
	if tcp6 != "" {
		if err := os.WriteFile(filepath.Join(dir, "net", "tcp6"), []byte(tcp6), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestProcListeners(t *testing.T) {
	dir := writeTree(t, procNetTCP, procNetTCP6)
	ls, err := ProcListeners(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []Listener{
		{net.IPv4(127, 0, 0, 1).To4(), 6379, 1001, 0x81},
		{net.IPv4zero.To4(), 17147, 1002, 0},
		{net.IPv4zero.To4(), 22, 2000, 0},
		{net.IPv6loopback, 6379, 1004, 0},
		{net.IPv4(127, 0, 0, 1).To4(), 7000, 1005, 0},
	}
	if len(ls) != len(want) {
		t.Fatalf("got %d listeners: %+v", len(ls), ls)
	}
	for i := range want {
		if !ls[i].IP.Equal(want[i].IP) || ls[i].Port != want[i].Port || ls[i].Inode != want[i].Inode || ls[i].Queue != want[i].Queue {
			t.Errorf("listener %d = %+v, want %+v", i, ls[i], want[i])
		}
	}
	if len(ls[4].IP) != net.IPv4len {
		t.Errorf("IPv4-mapped listener kept its 16-byte form: %v", ls[4].IP)
	}
	only, err := ProcListeners(dir, 6379)
	if err != nil || len(only) != 2 || only[0].Inode != 1001 || only[1].Inode != 1004 {
		t.Fatalf("port 6379: %+v, %v", only, err)
	}
}

func TestProcListenersNoIPv6(t *testing.T) {
	ls, err := ProcListeners(writeTree(t, procNetTCP, ""), 22)
	if err != nil || len(ls) != 1 || ls[0].Inode != 2000 {
		t.Fatalf("without tcp6: %+v, %v", ls, err)
	}
}

func TestProcListenersDamaged(t *testing.T) {
	_, err := ProcListeners(writeTree(t, procNetTCP+"   9: zz:zz 0:0 0A a b c d e f\n", ""), 0)
	if err == nil {
		t.Fatal("a damaged line was not reported")
	}
}
