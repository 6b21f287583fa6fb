package procnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/prometheus/procfs"

	"github.com/stormguard/stormguard/internal/netns"
)

// Listener is one TCP socket in LISTEN state.
type Listener struct {
	IP    net.IP
	Port  int
	Inode uint64
	// Queue is the accept queue's depth now: for a listener the kernel
	// reports sk_ack_backlog as rx_queue.
	Queue uint64
}

// tcpListen is TCP_LISTEN in the st column.
const tcpListen = 0x0A

// Listeners returns the LISTEN sockets of /proc/thread-self/net/tcp and
// tcp6 in the namespace ns ("" = ours); port 0 means every port. A
// missing tcp6 (IPv6 disabled) is not an error.
func Listeners(ns string, port int) ([]Listener, error) {
	var out []Listener
	err := netns.Do(ns, func() error {
		var err error
		out, err = readListeners("/proc/thread-self", port)
		return err
	})
	return out, err
}

// ProcListeners returns the LISTEN sockets of dir/net/tcp and tcp6, where
// dir is a process's procfs directory (/proc/PID: that process's
// namespace, readable from any thread) or a fixture tree.
func ProcListeners(dir string, port int) ([]Listener, error) {
	return readListeners(dir, port)
}

func readListeners(dir string, port int) ([]Listener, error) {
	// procfs.NewFS takes any directory holding net/tcp as its mount point.
	fs, err := procfs.NewFS(dir)
	if err != nil {
		return nil, fmt.Errorf("read sockets under %s: %w", dir, err)
	}
	var out []Listener
	for _, v6 := range []bool{false, true} {
		read, name := fs.NetTCP, "tcp"
		if v6 {
			read, name = fs.NetTCP6, "tcp6"
		}
		socks, err := read()
		if err != nil {
			if v6 && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return out, fmt.Errorf("read %s: %w", filepath.Join(dir, "net", name), err)
		}
		for _, s := range socks {
			if s.St != tcpListen || port != 0 && int(s.LocalPort) != port {
				continue
			}
			ip := s.LocalAddr
			if v4 := ip.To4(); v4 != nil && len(ip) == net.IPv6len && !ip.Equal(net.IPv6zero) && !ip.Equal(net.IPv6loopback) {
				ip = v4 // an IPv4-mapped address in tcp6
			}
			out = append(out, Listener{IP: ip, Port: int(s.LocalPort), Inode: s.Inode, Queue: s.RxQueue})
		}
	}
	return out, nil
}
