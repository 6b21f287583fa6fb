package checklist

import (
	"strconv"
	"strings"
	"time"
)

// Role says which side of the connection the audited host is.
type Role string

// Roles.
const (
	RoleServer Role = "server" // the host runs Valkey (default)
	RoleClient Role = "client" // the host runs an application that connects to Valkey
)

// Facts is everything the rules look at, gathered once. A nil map or pointer
// means "not read"; the matching *Err field says why.
type Facts struct {
	Role Role
	// NetNS is the network namespace the kernel facts come from ("" = the
	// namespace stormguard runs in).
	NetNS string
	// Port is the Valkey port (0 when no --valkey was given).
	Port int

	// Sysctls maps dotted sysctl names to their value in the target
	// namespace. A missing key was not readable; SysctlErrs says why.
	Sysctls    map[string]string
	SysctlErrs map[string]string

	// Counters are the namespace's TcpExt and Tcp counters keyed
	// "TcpExt.ListenOverflows", "Tcp.PassiveOpens"; CountersLater is a
	// second read Window later (nil when only one read was made).
	Counters      map[string]uint64
	CountersLater map[string]uint64
	CountersErr   string
	Window        time.Duration

	Conntrack ConntrackFacts

	// Valkey is nil when Valkey was not checked; ValkeyErr says why.
	Valkey    *ValkeyFacts
	ValkeyErr string

	Process ProcessFacts

	// EBPF is nil when eBPF was not tried (no port, a client host);
	// otherwise EBPF.Err says why the per-port eBPF signals cannot run
	// ("" = they can).
	EBPF *EBPFFacts

	// NIC is nil when no NIC allowance counters could be read; NICErr says why.
	NIC    *NICFacts
	NICErr string

	// Clients is CLIENT LIST, parsed; nil when it was not read (ClientsErr
	// says why: not asked for, not safe now, failed).
	Clients    []ClientConn
	ClientsErr string

	// Agent is what a running stormguard agent reported about this target
	// when Valkey refused the audit's own connection; nil when it was not
	// asked (see AgentFacts).
	Agent *AgentFacts
}

// AgentFacts are the Valkey counters a running agent (watch) last read over
// its reserved connection: what check cannot ask Valkey itself while
// Valkey is at maxclients.
type AgentFacts struct {
	// URL is the agent's /api/v1/state address.
	URL string
	// Err says why the agent gave nothing (not running, no such target,
	// no Valkey fields in its latest sample); the fields below are then
	// unset.
	Err string
	// SampleTime is when the agent took its latest sample of the target.
	SampleTime time.Time
	// Rejected, Connected and MaxClients are INFO's rejected_connections,
	// connected_clients and maxclients in that sample (nil if missing).
	Rejected, Connected, MaxClients *uint64
}

// ConntrackFacts describe the connection-tracking table of the namespace.
type ConntrackFacts struct {
	// Loaded reports that nf_conntrack is present in the namespace.
	Loaded bool
	Count  *uint64
	Max    *uint64
	// Err is why conntrack could not be read (empty when it was, or when it
	// simply is not loaded).
	Err string
	// PortTracked says whether this audit's own connection to Valkey has a
	// conntrack entry (nil: unknown, PortTrackedErr says why).
	PortTracked    *bool
	PortTrackedErr string
}

// ValkeyFacts is what one short-lived connection read from Valkey.
type ValkeyFacts struct {
	// Addr is the address without credentials.
	Addr string
	TLS  bool
	// Config is CONFIG GET of the parameters the rules use; a parameter the
	// server does not know (older versions) is absent.
	Config map[string]string
	// Info is INFO (server, clients, stats); InfoLater is a second INFO
	// read Window later (nil when not made).
	Info      map[string]string
	InfoLater map[string]string
	// ConfigErr is why CONFIG GET failed (renamed or forbidden on managed
	// services); maxclients then comes from INFO.
	ConfigErr string
}

// ProcessFacts describe the valkey-server process.
type ProcessFacts struct {
	PID int
	// Via says how the PID was found ("listening socket", "INFO process_id").
	Via string
	// MaxOpenFiles is the soft "Max open files" limit (nil: unknown).
	MaxOpenFiles *uint64
	Err          string
}

// NICFacts are cloud NIC allowance counters (AWS ENA), summed over the
// interfaces that have them.
type NICFacts struct {
	Interfaces []string
	// Stats holds the *_allowance_exceeded counters and the
	// conntrack_allowance_available gauge, by ethtool name.
	Stats map[string]uint64
}

// ClientConn is one line of CLIENT LIST.
type ClientConn struct {
	ID      string
	IP      string // addr without the port
	Name    string
	LibName string
	LibVer  string
	User    string
	Flags   string
	Age     int64 // seconds
	Idle    int64 // seconds
	TotCmds int64 // -1 when the server does not report tot-cmds
}

// Unlimited stands for "unlimited" in /proc/PID/limits.
const Unlimited = ^uint64(0)

func (f *Facts) sysctl(name string) (int64, bool) {
	v, ok := f.Sysctls[name]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.Fields(v + " x")[0], 10, 64)
	return n, err == nil
}

// sysctlFields parses a multi-value sysctl such as ip_local_port_range.
func (f *Facts) sysctlFields(name string) ([]int64, bool) {
	v, ok := f.Sysctls[name]
	if !ok {
		return nil, false
	}
	var out []int64
	for _, s := range strings.Fields(v) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, false
		}
		out = append(out, n)
	}
	return out, len(out) > 0
}

func (f *Facts) sysctlWhyNot(name string) string {
	if r, ok := f.SysctlErrs[name]; ok {
		return r
	}
	return "not read"
}

func (f *Facts) counter(name string) (uint64, bool) {
	v, ok := f.Counters[name]
	return v, ok
}

// counterDelta is the increase of a counter over the window.
func (f *Facts) counterDelta(name string) (uint64, bool) {
	a, ok1 := f.Counters[name]
	b, ok2 := f.CountersLater[name]
	if !ok1 || !ok2 || b < a {
		return 0, false
	}
	return b - a, true
}

func (v *ValkeyFacts) config(name string) (string, bool) {
	if v == nil {
		return "", false
	}
	s, ok := v.Config[name]
	return s, ok
}

func (v *ValkeyFacts) configInt(name string) (int64, bool) {
	s, ok := v.config(name)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n, err == nil
}

func (v *ValkeyFacts) info(name string) (string, bool) {
	if v == nil {
		return "", false
	}
	s, ok := v.Info[name]
	return s, ok
}

func (v *ValkeyFacts) infoInt(name string) (int64, bool) {
	s, ok := v.info(name)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n, err == nil
}

// infoDelta is the increase of an INFO counter over the window.
func (v *ValkeyFacts) infoDelta(name string) (int64, bool) {
	if v == nil || v.InfoLater == nil {
		return 0, false
	}
	a, ok1 := v.infoInt(name)
	s, ok2 := v.InfoLater[name]
	if !ok1 || !ok2 {
		return 0, false
	}
	b, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || b < a {
		return 0, false
	}
	return b - a, true
}

// Version is the server version: valkey_version, else redis_version.
func (v *ValkeyFacts) Version() string {
	if s, ok := v.info("valkey_version"); ok && s != "" {
		return s
	}
	s, _ := v.info("redis_version")
	return s
}

// IsValkey reports whether the server calls itself Valkey (server_name or
// valkey_version in INFO); Redis and very old Valkey do not.
func (v *ValkeyFacts) IsValkey() bool {
	if s, ok := v.info("server_name"); ok && strings.EqualFold(s, "valkey") {
		return true
	}
	_, ok := v.info("valkey_version")
	return ok
}

// versionAtLeast compares a dotted version with major.minor.
func versionAtLeast(ver string, major, minor int) bool {
	parts := strings.SplitN(ver, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

// EBPFFacts is the result of loading the eBPF programs for the port once.
type EBPFFacts struct {
	Err string
}
