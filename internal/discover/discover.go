package discover

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/stormguard/stormguard/internal/procnet"
)

// Server is one discovered Valkey process and its client ports.
type Server struct {
	PID  int
	Comm string
	// NetNS is the namespace path to use ("" = the scanner's own namespace).
	NetNS string
	// NetNSInode identifies the namespace across processes.
	NetNSInode uint64
	// Addrs are host:port addresses to reach the server from inside its
	// namespace, one per client port (cluster-bus ports left out).
	Addrs []string
	// OtherListeners counts the TCP ports listened on in the namespace by
	// sockets that are not this process's; 0 means this server is the
	// namespace's only listener, so the namespace-wide listen-queue
	// counters are its own.
	OtherListeners int
}

// Key identifies a target across scans.
func (s Server) Key(addr string) string {
	return fmt.Sprintf("%d/%s", s.NetNSInode, addr)
}

// Scanner scans a procfs tree.
type Scanner struct {
	// Proc is the procfs root ("/proc").
	Proc string
	// Names are the process names to look for.
	Names []string
}

// DefaultNames are the server process names discovered by default.
var DefaultNames = []string{"valkey-server", "redis-server"}

// Scan returns every matching server with at least one listening port.
func (sc Scanner) Scan() ([]Server, error) {
	proc := sc.Proc
	if proc == "" {
		proc = "/proc"
	}
	names := sc.Names
	if len(names) == 0 {
		names = DefaultNames
	}
	self, _ := nsInode(filepath.Join(proc, "self", "ns", "net"))
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", proc, err)
	}
	var out []Server
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(proc, e.Name(), "comm"))
		if err != nil {
			continue
		}
		c := strings.TrimSpace(string(comm))
		if !contains(names, c) {
			continue
		}
		srv, err := sc.inspect(proc, pid, c, self)
		if err != nil || len(srv.Addrs) == 0 {
			continue // raced with exit, or not listening (yet)
		}
		out = append(out, srv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

func (sc Scanner) inspect(proc string, pid int, comm string, self uint64) (Server, error) {
	dir := filepath.Join(proc, strconv.Itoa(pid))
	srv := Server{PID: pid, Comm: comm}
	ino, err := nsInode(filepath.Join(dir, "ns", "net"))
	if err != nil {
		return srv, err
	}
	srv.NetNSInode = ino
	if ino != self {
		srv.NetNS = filepath.Join(dir, "ns", "net")
	}
	inodes, err := socketInodes(filepath.Join(dir, "fd"))
	if err != nil {
		return srv, err
	}
	// /proc/PID/net shows the process's namespace from any thread. A
	// table that cannot be read leaves the server without addresses.
	ls, _ := procnet.ProcListeners(dir, 0)
	srv.Addrs = clientAddrs(ls, inodes)
	srv.OtherListeners = otherPorts(ls, inodes)
	return srv, nil
}

// otherPorts counts the distinct ports of listeners that are not own.
func otherPorts(ls []procnet.Listener, own map[uint64]bool) int {
	ports := map[int]bool{}
	for _, l := range ls {
		if !own[l.Inode] {
			ports[l.Port] = true
		}
	}
	return len(ports)
}

// clientAddrs picks the process's listeners, one address per port,
// preferring loopback, and leaves out cluster-bus ports (port+10000 when
// port is also listening).
func clientAddrs(ls []procnet.Listener, own map[uint64]bool) []string {
	byPort := map[int]net.IP{}
	for _, l := range ls {
		if !own[l.Inode] {
			continue
		}
		ip := reachable(l.IP)
		if prev, ok := byPort[l.Port]; ok && prev.IsLoopback() && !ip.IsLoopback() {
			continue
		}
		if prev, ok := byPort[l.Port]; ok && prev.To4() != nil && ip.To4() == nil {
			continue // prefer IPv4 when both are there
		}
		byPort[l.Port] = ip
	}
	var ports []int
	for p := range byPort {
		if _, base := byPort[p-10000]; p > 10000 && base {
			continue
		}
		ports = append(ports, p)
	}
	sort.Ints(ports)
	out := make([]string, 0, len(ports))
	for _, p := range ports {
		out = append(out, net.JoinHostPort(byPort[p].String(), strconv.Itoa(p)))
	}
	return out
}

// reachable maps a wildcard listen address to the loopback of its family.
func reachable(ip net.IP) net.IP {
	switch {
	case ip.Equal(net.IPv4zero):
		return net.IPv4(127, 0, 0, 1).To4()
	case ip.Equal(net.IPv6unspecified):
		return net.IPv6loopback
	}
	return ip
}

func socketInodes(fdDir string) (map[uint64]bool, error) {
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	out := map[uint64]bool{}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
		if err == nil {
			out[n] = true
		}
	}
	return out, nil
}

func nsInode(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("stat %s: no inode", path)
	}
	return st.Ino, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
