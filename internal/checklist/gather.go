package checklist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/stormguard/stormguard/internal/listentrace"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/procnet"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// CounterReader reads the TCP counters (CounterNames) of the network
// namespace at nsPath ("" = stormguard's own). It is a field of Options so
// the checklist can later read them through internal/source's tcpstat
// source instead of its own minimal parser.
type CounterReader func(ctx context.Context, nsPath string) (map[string]uint64, error)

// Options configure Gather. Zero values mean defaults.
type Options struct {
	// Role is the side of the connection this host is (RoleServer).
	Role Role
	// NetNS is the target's network namespace path ("" = stormguard's own).
	NetNS string
	// Valkey is the server to audit; nil audits the kernel only.
	Valkey *addr.Addr
	// Window is the time between the two counter reads that measure rates
	// and "is it happening now" (1s).
	Window time.Duration
	// Timeout bounds the Valkey dial and each command (3s).
	Timeout time.Duration
	// ReadCounters reads the TCP counters (ReadProcCounters).
	ReadCounters CounterReader
	// NoClientList skips CLIENT LIST even when it would be safe.
	NoClientList bool
	// Progress, when set, is told each step as it starts ("counting over
	// the 1s window"), for a progress line on a terminal.
	Progress func(step string)
}

func (o Options) withDefaults() Options {
	if o.Role == "" {
		o.Role = RoleServer
	}
	if o.Window <= 0 {
		o.Window = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.ReadCounters == nil {
		o.ReadCounters = ReadProcCounters
	}
	return o
}

// Gather reads every fact it can; what it cannot read is recorded with the
// reason. It fails only if ctx is cancelled.
func Gather(ctx context.Context, o Options) (*Facts, error) {
	o = o.withDefaults()
	step := func(s string) {
		if o.Progress != nil {
			o.Progress(s)
		}
	}
	f := &Facts{Role: o.Role, NetNS: o.NetNS, Window: o.Window}
	if o.Valkey != nil {
		f.Port = o.Valkey.Port
	}
	// Valkey first, so the audit's own connection is made before the
	// counters are read (it would otherwise count as churn) and is in
	// the conntrack count.
	var vc *valkeyConn
	var err error
	if o.Valkey == nil {
		f.ValkeyErr = "no --valkey address given"
	} else {
		step("connecting to Valkey " + o.Valkey.String())
		vc, err = dialValkey(o)
		if err != nil {
			f.ValkeyErr = fmt.Sprintf("cannot connect to %s: %v", o.Valkey, err)
			if msg := probeRefusal(ctx, o); msg != "" {
				f.ValkeyErr += fmt.Sprintf(" (the server greets new connections with %q)", msg)
			}
		} else {
			defer vc.client.Close()
			f.Valkey = vc.read(ctx, o)
			if f.Valkey == nil {
				f.ValkeyErr = vc.err
			}
		}
	}
	if o.Role == RoleServer && f.Port > 0 {
		step("loading the eBPF programs once")
		f.EBPF = probeEBPF(ctx, o.NetNS, f.Port)
	}
	step("reading sysctls, conntrack and TCP counters")
	readSysctls(o.NetNS, f)
	readConntrack(o.NetNS, f)
	if f.Counters, err = o.ReadCounters(ctx, o.NetNS); err != nil {
		f.CountersErr = "read TCP counters: " + err.Error()
		f.Counters = nil
	}

	step(fmt.Sprintf("counting connections and drops over the %s window", o.Window))
	select {
	case <-ctx.Done():
		return f, ctx.Err()
	case <-time.After(o.Window):
	}
	step("reading counters again, clients and NIC")
	if f.Counters != nil {
		if later, err := o.ReadCounters(ctx, o.NetNS); err == nil {
			f.CountersLater = later
		}
	}
	if f.Valkey != nil {
		if s, err := vc.client.Do(ctx, vc.client.B().Info().Build()).ToString(); err == nil {
			f.Valkey.InfoLater = valkeyconn.ParseInfo(s)
		}
		readClients(ctx, o, f, vc)
		if f.Conntrack.Loaded {
			tracked, err := conntrackTracked(o.NetNS, vc.local, vc.remote)
			if err != nil {
				f.Conntrack.PortTrackedErr = err.Error()
			} else {
				f.Conntrack.PortTracked = &tracked
			}
		}
		if o.Role == RoleServer {
			// On a client host Valkey runs elsewhere: no process to find.
			f.Process = findProcess(o.NetNS, f)
		}
	} else if f.Conntrack.Loaded {
		f.Conntrack.PortTrackedErr = "no Valkey connection to look up"
	}
	readNIC(f)
	return f, nil
}

func readSysctls(ns string, f *Facts) {
	f.Sysctls = map[string]string{}
	f.SysctlErrs = map[string]string{}
	err := netns.Do(ns, func() error {
		for _, name := range KernelSysctls {
			b, err := os.ReadFile(sysctlPath(name))
			if err != nil {
				f.SysctlErrs[name] = describe(err)
				continue
			}
			f.Sysctls[name] = strings.TrimSpace(string(b))
		}
		return nil
	})
	if err != nil {
		for _, name := range KernelSysctls {
			f.SysctlErrs[name] = describe(err)
		}
	}
}

func sysctlPath(name string) string { return procnet.SysctlPath(name) }

// describe turns an I/O error into a reason a reader can act on.
func describe(err error) string {
	switch {
	case errors.Is(err, os.ErrPermission):
		return err.Error() + " (needs root: CAP_SYS_ADMIN to enter a namespace, CAP_NET_ADMIN for netlink)"
	case errors.Is(err, os.ErrNotExist):
		return err.Error() + " (not present on this kernel)"
	}
	return err.Error()
}

func readConntrack(ns string, f *Facts) {
	err := netns.Do(ns, func() error {
		b, err := os.ReadFile(sysctlPath(sysCTCount))
		if errors.Is(err, os.ErrNotExist) {
			return nil // not loaded
		}
		if err != nil {
			return err
		}
		f.Conntrack.Loaded = true
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return fmt.Errorf("parse %s: %w", sysCTCount, err)
		}
		f.Conntrack.Count = &n
		b, err = os.ReadFile(sysctlPath(sysCTMax))
		if err != nil {
			return err
		}
		m, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return fmt.Errorf("parse %s: %w", sysCTMax, err)
		}
		f.Conntrack.Max = &m
		return nil
	})
	if err != nil {
		f.Conntrack.Err = describe(err)
	}
}

// ReadProcCounters reads CounterNames from /proc/thread-self/net/netstat
// and snmp inside nsPath. (/proc/self/net would show the main thread's
// namespace, not the one this thread entered.)
func ReadProcCounters(_ context.Context, nsPath string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, file := range []string{"netstat", "snmp"} {
		b, err := procnet.ReadFile(nsPath, file)
		if err != nil {
			return nil, errors.New(describe(err))
		}
		m, err := ParseNetstat(bytes.NewReader(b), CounterNames)
		if err != nil {
			return nil, fmt.Errorf("parse /proc/net/%s: %w", file, err)
		}
		for k, v := range m {
			out[k] = v
		}
	}
	return out, nil
}

// valkeyConn is check's single short-lived connection.
type valkeyConn struct {
	client        valkey.Client
	local, remote net.Addr
	err           string
}

func dialValkey(o Options) (*valkeyConn, error) {
	vc := &valkeyConn{}
	// valkeyconn.Connect dials at once, bounded by the timeout.
	c, err := valkeyconn.Connect(*o.Valkey, o.NetNS, valkeyconn.Options{
		Name: AuditClientName, DialTimeout: o.Timeout, WriteTimeout: o.Timeout,
		OnConn: func(c net.Conn) { vc.local, vc.remote = c.LocalAddr(), c.RemoteAddr() },
	})
	if err != nil {
		return nil, err
	}
	vc.client = c
	return vc, nil
}

// read runs CONFIG GET and INFO.
func (vc *valkeyConn) read(ctx context.Context, o Options) *ValkeyFacts {
	c := vc.client
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	s, err := c.Do(cctx, c.B().Info().Build()).ToString()
	if err != nil {
		vc.err = fmt.Sprintf("INFO on %s failed: %v", o.Valkey, err)
		return nil
	}
	v := &ValkeyFacts{Addr: o.Valkey.String(), TLS: o.Valkey.TLS, Info: valkeyconn.ParseInfo(s), Config: map[string]string{}}
	cfg, err := c.Do(cctx, c.B().ConfigGet().Parameter(ValkeyConfigParams...).Build()).AsStrMap()
	if err != nil {
		v.ConfigErr = "CONFIG GET failed: " + err.Error()
	}
	for k, val := range cfg {
		v.Config[k] = val
	}
	// INFO clients carries maxclients (Redis ≥7, Valkey) where CONFIG is
	// renamed or forbidden (managed services).
	if _, ok := v.Config["maxclients"]; !ok {
		if mc, ok := v.Info["maxclients"]; ok {
			v.Config["maxclients"] = mc
		}
	}
	return v
}

// probeRefusal reads what a plain-TCP Valkey sends unasked on a new
// connection: at maxclients it writes "-ERR max number of clients
// reached" and closes, which the client library reports only as EOF. Over
// TLS the server closes without a word, so there is nothing to read.
func probeRefusal(ctx context.Context, o Options) string {
	if o.Valkey.TLS {
		return ""
	}
	var c net.Conn
	err := netns.Do(o.NetNS, func() error {
		d := net.Dialer{Timeout: o.Timeout}
		var err error
		c, err = d.DialContext(ctx, "tcp", o.Valkey.HostPort())
		return err
	})
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(min(o.Timeout, time.Second)))
	buf := make([]byte, 256)
	n, _ := c.Read(buf)
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	if strings.HasPrefix(line, "-") {
		return strings.TrimPrefix(line, "-")
	}
	return ""
}

// clientListSafe says whether CLIENT LIST is cheap and calm enough now.
func clientListSafe(f *Facts) (bool, string) {
	v := f.Valkey
	n, ok := v.infoInt("connected_clients")
	if !ok {
		return false, "connected_clients unknown"
	}
	if n > ClientListMaxClients {
		return false, fmt.Sprintf("skipped CLIENT LIST: %d connected clients > %d (O(clients) on Valkey's main thread)", n, ClientListMaxClients)
	}
	if mc, ok := v.configInt("maxclients"); ok && mc > 0 && float64(n)/float64(mc) > ClientListMaxRatio {
		return false, fmt.Sprintf("skipped CLIENT LIST: %d of maxclients %d connected (> %.0f%%)", n, mc, ClientListMaxRatio*100)
	}
	if d, ok := v.infoDelta("rejected_connections"); ok && d > 0 {
		return false, fmt.Sprintf("skipped CLIENT LIST: Valkey rejected %d connections during the audit (storm)", d)
	}
	if d, ok := f.counterDelta("TcpExt.ListenOverflows"); ok && d > 0 {
		return false, fmt.Sprintf("skipped CLIENT LIST: %d accept-queue overflows during the audit (storm)", d)
	}
	return true, ""
}

func readClients(ctx context.Context, o Options, f *Facts, vc *valkeyConn) {
	if o.NoClientList {
		f.ClientsErr = "CLIENT LIST not requested"
		return
	}
	if ok, why := clientListSafe(f); !ok {
		f.ClientsErr = why
		return
	}
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	s, err := vc.client.Do(cctx, vc.client.B().ClientList().Build()).ToString()
	if err != nil {
		f.ClientsErr = "CLIENT LIST failed: " + err.Error()
		return
	}
	f.Clients = ParseClientList(s)
}

// findProcess finds valkey-server's PID and its fd limit: first by the
// listening socket's inode (needs root to read other users' /proc/PID/fd),
// then INFO process_id when that PID is visible here and lives in the
// target namespace.
func findProcess(ns string, f *Facts) ProcessFacts {
	var p ProcessFacts
	var why []string
	inodes, err := listenInodes(ns, f.Port)
	if err != nil {
		why = append(why, "listening socket: "+err.Error())
	} else if len(inodes) == 0 {
		why = append(why, fmt.Sprintf("no listening socket on port %d in the target namespace", f.Port))
	} else if pid, err := pidOwningInodes(inodes); err != nil {
		why = append(why, "socket owner: "+err.Error())
	} else {
		p.PID, p.Via = pid, "listening socket"
	}
	if p.PID == 0 {
		if pid, ok := f.Valkey.infoInt("process_id"); ok && pid > 0 {
			if err := holdsListener(int(pid), f.Port, inodes, ns); err != nil {
				why = append(why, fmt.Sprintf("INFO process_id %d: %v", pid, err))
			} else {
				p.PID, p.Via = int(pid), "INFO process_id"
			}
		}
	}
	if p.PID == 0 {
		p.Err = "Valkey's process not found: " + strings.Join(why, "; ")
		return p
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "limits"))
	if err != nil {
		p.Err = "read limits of pid " + strconv.Itoa(p.PID) + ": " + describe(err)
		return p
	}
	n, err := ParseLimitsNoFile(string(b))
	if err != nil {
		p.Err = fmt.Sprintf("pid %d limits: %v", p.PID, err)
		return p
	}
	p.MaxOpenFiles = &n
	return p
}

// holdsListener checks that pid (from INFO process_id) is the server we
// talk to: its /proc/PID/net/tcp{,6} (world-readable) shows the same
// listening socket inode as the target namespace, or, failing that, its
// network namespace is the target's (needs privileges to stat).
func holdsListener(pid, port int, inodes []uint64, ns string) error {
	if len(inodes) > 0 {
		want := map[uint64]bool{}
		for _, i := range inodes {
			want[i] = true
		}
		// A read error leaves the namespace check below to decide.
		ls, _ := procnet.ProcListeners(filepath.Join("/proc", strconv.Itoa(pid)), port)
		for _, l := range ls {
			if want[l.Inode] {
				return nil
			}
		}
	}
	return sameNetNS(pid, ns)
}

func listenInodes(ns string, port int) ([]uint64, error) {
	ls, err := procnet.Listeners(ns, port)
	if err != nil {
		return nil, errors.New(describe(err))
	}
	var out []uint64
	for _, l := range ls {
		if l.Inode != 0 {
			out = append(out, l.Inode)
		}
	}
	return out, nil
}

// pidOwningInodes scans /proc/*/fd for a socket with one of inodes.
func pidOwningInodes(inodes []uint64) (int, error) {
	want := map[string]bool{}
	for _, i := range inodes {
		want["socket:["+strconv.FormatUint(i, 10)+"]"] = true
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	denied := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				denied++
			}
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && want[l] {
				return pid, nil
			}
		}
	}
	if denied > 0 {
		return 0, fmt.Errorf("not found; %d processes' fds were not readable (needs root)", denied)
	}
	return 0, errors.New("no process holds the listening socket (another pid namespace?)")
}

// probeEBPF loads and at once unloads the programs stormguard watch would
// use for port, to say whether its eBPF signals will be there.
func probeEBPF(ctx context.Context, netns string, port int) *EBPFFacts {
	if listentrace.Off() {
		return &EBPFFacts{Err: "turned off (" + listentrace.Env + "=0)"}
	}
	tr, err := listentrace.Open(ctx, netns, uint16(port), nil)
	if err != nil {
		return &EBPFFacts{Err: err.Error()}
	}
	if err := tr.Close(); err != nil {
		return &EBPFFacts{Err: err.Error()}
	}
	return &EBPFFacts{}
}
