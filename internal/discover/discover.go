package discover

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
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
	// NetNSName tells the namespace apart for people when NetNS is set:
	// its `ip netns` name, else the hostname in the server's root
	// (a Kubernetes pod's name, a Docker container's id) when it differs
	// from the scanner's, else "netns:INODE".
	NetNSName string
}

// Key identifies a target across scans.
func (s Server) Key(addr string) string {
	return fmt.Sprintf("%d/%s", s.NetNSInode, addr)
}

// Name is the display name of the target at addr (one of Addrs): addr
// itself, or addr@NetNSName for a loopback address in another namespace.
// Every container whose Valkey listens on the wildcard address is reached
// at 127.0.0.1:PORT in its own namespace, so on a node with several such
// pods addr alone would name them all alike, and the agent's state, metric
// labels and captures, all keyed by name, would mix them up.
func (s Server) Name(addr string) string {
	if s.NetNS == "" {
		return addr
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return addr
	}
	name := s.NetNSName
	if name == "" {
		name = fmt.Sprintf("netns:%d", s.NetNSInode)
	}
	return addr + "@" + name
}

// Scanner scans a procfs tree.
type Scanner struct {
	// Proc is the procfs root ("/proc").
	Proc string
	// Names are the process names to look for.
	Names []string
	// Memo, when set, keeps each server between scans (a rescanning agent
	// sets it). See Memo.
	Memo *Memo
	// NetNSDir is where `ip netns` names namespaces ("/var/run/netns");
	// tests point it elsewhere.
	NetNSDir string
}

// Memo remembers what a scan learnt about each server process so the next
// scan can reuse it. Telling a process's own listeners from other
// processes' needs the inode of every socket the process holds: a readlink
// per descriptor, 20,000 of them for a server with 20,000 clients. A
// rescan repeats that only when the process (PID and start time), its
// namespace, or the set of listening sockets in that namespace changed;
// otherwise the previous answer stands. Its zero value is ready to use; it
// is safe for concurrent use.
type Memo struct {
	mu sync.Mutex
	m  map[int]memoEntry
}

type memoEntry struct {
	start  string   // /proc/PID/stat starttime
	ns     uint64   // namespace inode
	listen []uint64 // sorted inodes of the namespace's listeners
	srv    Server
}

func (m *Memo) get(pid int, start string, ns uint64, listen []uint64) (Server, bool) {
	if m == nil {
		return Server{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[pid]
	if !ok || e.start != start || e.ns != ns || !slices.Equal(e.listen, listen) {
		return Server{}, false
	}
	return e.srv, true
}

func (m *Memo) put(pid int, e memoEntry) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[int]memoEntry{}
	}
	m.m[pid] = e
}

// keep forgets every process not in pids (they exited).
func (m *Memo) keep(pids map[int]bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for pid := range m.m {
		if !pids[pid] {
			delete(m.m, pid)
		}
	}
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
	seen := map[int]bool{}
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
		seen[pid] = true
		srv, err := sc.inspect(proc, pid, c, self)
		if err != nil || len(srv.Addrs) == 0 {
			continue // raced with exit, or not listening (yet)
		}
		out = append(out, srv)
	}
	sc.Memo.keep(seen)
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
	ls := sc.listeners(dir, srv.NetNS)
	listen := make([]uint64, len(ls))
	for i, l := range ls {
		listen[i] = l.Inode
	}
	slices.Sort(listen)
	start := startTime(dir)
	if start != "" {
		if prev, ok := sc.Memo.get(pid, start, ino, listen); ok {
			return prev, nil
		}
	}
	inodes, err := socketInodes(filepath.Join(dir, "fd"))
	if err != nil {
		return srv, err
	}
	srv.Addrs = clientAddrs(ls, inodes)
	srv.OtherListeners = otherPorts(ls, inodes)
	if srv.NetNS != "" {
		srv.NetNSName = sc.nsName(proc, dir, ino)
	}
	if start != "" {
		sc.Memo.put(pid, memoEntry{start: start, ns: ino, listen: listen, srv: srv})
	}
	return srv, nil
}

// nsName names the namespace ino of the process in dir for people (see
// Server.NetNSName); "" when nothing better than the inode is known.
func (sc Scanner) nsName(proc, dir string, ino uint64) string {
	nsDir := sc.NetNSDir
	if nsDir == "" {
		nsDir = "/var/run/netns"
	}
	if ents, err := os.ReadDir(nsDir); err == nil {
		for _, e := range ents {
			if i, err := nsInode(filepath.Join(nsDir, e.Name())); err == nil && i == ino {
				return e.Name()
			}
		}
	}
	host := func(d string) string {
		b, _ := os.ReadFile(filepath.Join(d, "root", "etc", "hostname"))
		return strings.TrimSpace(string(b))
	}
	if h := host(dir); h != "" && h != host(filepath.Join(proc, "self")) {
		return h
	}
	return ""
}

// listeners returns the LISTEN sockets of the process's namespace. On the
// live /proc it asks sock_diag, whose LISTEN dump costs the same with 0 or
// 20,000 connections in the namespace; where that fails (no permission to
// enter the namespace) and for a fixture tree it reads dir/net/tcp and
// tcp6, which /proc/PID/net shows for the process's namespace from any
// thread. A table that cannot be read leaves the server without addresses.
func (sc Scanner) listeners(dir, nsPath string) []procnet.Listener {
	if sc.Proc == "" || sc.Proc == "/proc" {
		if ls, err := procnet.DiagListeners(nsPath); err == nil {
			return ls
		}
	}
	ls, _ := procnet.ProcListeners(dir, 0)
	return ls
}

// startTime returns field 22 of dir/stat (the process's start time in
// clock ticks since boot), which tells a process from a later one that
// reused its PID; "" if it cannot be read.
func startTime(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	// After the command: state is field 3, starttime field 22.
	if len(f) < 20 {
		return ""
	}
	return f[19]
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
