package sample

import "time"

// Sample is one instant of every signal for one target. Its JSON encoding is
// the stable contract of `stormguard sample --json` (see docs/sample.md):
// every key is always present; unavailable signals are null.
type Sample struct {
	Time   time.Time `json:"time"`
	Target string    `json:"target"`
	Port   int       `json:"port"`
	// NetNS is the network namespace the kernel signals come from
	// ("" = the namespace stormguard runs in).
	NetNS string `json:"netns"`
	// IntervalMS is the sampling interval this sample closes.
	IntervalMS float64 `json:"interval_ms"`

	Listen *Listen `json:"listen"`
	// SynRecv counts request sockets (SYN_RECV) for the target port.
	SynRecv *uint64 `json:"syn_recv"`
	// Established counts ESTABLISHED sockets whose local port is the target port.
	Established *uint64 `json:"established"`
	// CountsAgeMS is how old SynRecv and Established are: counting walks
	// the kernel's whole established hash, so with many connections on the
	// host it is done less often than every sample (docs/signals.md).
	CountsAgeMS *float64 `json:"counts_age_ms"`

	// AcceptWaitMS is how long connections waited in the accept queue
	// (handshake completed -> accept()) during the interval; eBPF only.
	AcceptWaitMS *AcceptWait `json:"accept_wait_ms"`
	// SynRate is SYNs per second to the target port over the interval
	// (eBPF only; docs/signals.md says what is counted).
	SynRate *float64 `json:"syn_rate"`
	// PortOverflows is the eBPF source's count of this listener's
	// overflows; the sampler shows it as listen.overflows_port.
	PortOverflows *uint64 `json:"-"`
	// Accepts is the eBPF source's cumulative count of connections
	// accepted from the port's listeners (the base of HandshakePending).
	Accepts *uint64 `json:"-"`
	// HandshakePending counts connections Valkey accepted during the
	// interval that had not become clients by its end: accepted (eBPF
	// accept count on the port) minus Valkey's completed setups
	// (total_connections_received) and maxclients rejections over the same
	// interval, at least 0. Over TLS these are handshakes still running
	// or given up; in plaintext it stays near 0. Null without eBPF or
	// Valkey fields, and on the first sample. The sampler derives it.
	HandshakePending *uint64 `json:"handshake_pending"`
	// AcceptWaitHist is the cumulative accept-wait histogram behind the
	// stormguard_accept_wait_seconds metric (eBPF only).
	AcceptWaitHist *Histogram `json:"-"`

	// NetNSOtherListeners counts the TCP listening ports in the target's
	// network namespace that belong to other processes; 0 means this
	// server is the namespace's only listener, so the namespace-wide
	// listen-queue counters are its own. Filled by the agent from
	// discovery; nil when unknown (an explicit target, `sample`).
	NetNSOtherListeners *int `json:"netns_other_listeners"`
	// Mitigation is what stormguard's own armed mitigations on this
	// target did. Filled by the agent while `watch --defuse auto` has
	// something armed; nil otherwise.
	Mitigation *Mitigation `json:"mitigation"`

	TCP       *TCP       `json:"tcp"`
	Conntrack *Conntrack `json:"conntrack"`
	Valkey    *Valkey    `json:"valkey"`
	NIC       *NIC       `json:"nic"`

	// Errors maps a source name to the reason its part is missing or stale.
	// Always present (an empty object when every source answered).
	Errors map[string]string `json:"errors"`
	// SourceAgeMS maps a source name to the age, in milliseconds, of the
	// reading this sample carries for it when that source was not read for
	// this sample: a Slow source (conntrack, nic, valkey) between its own
	// slower readings while the target is calm (see Slow). Always present
	// (an empty object when every part was read for this sample).
	SourceAgeMS map[string]float64 `json:"source_age_ms"`
	// SourceDurations holds how long each source took, in milliseconds;
	// for a carried part (SourceAgeMS), how long its reading took.
	SourceDurations map[string]float64 `json:"source_ms,omitempty"`
}

// Listen is the accept queue of the target's listening socket(s). Every
// listening socket has its own queue (IPv4 and IPv6 sockets, SO_REUSEPORT
// groups), and one full queue drops connections even while the others are
// empty, so Depth, DepthMax and Limit describe the fullest socket (highest
// depth/limit): depth >= limit means that port is overflowing now. The sums
// over all matching sockets are in DepthTotal and LimitTotal.
type Listen struct {
	// Depth is the fullest socket's accept-queue length at the sample instant.
	Depth *uint64 `json:"depth"`
	// DepthMax is the largest Depth seen by the fast poller (and the
	// sample's own read) during the interval.
	DepthMax *uint64 `json:"depth_max"`
	// Limit is the fullest socket's accept-queue limit: min(backlog, somaxconn).
	Limit *uint64 `json:"limit"`
	// DepthTotal and LimitTotal sum depth and limit over all matching
	// sockets at the sample instant.
	DepthTotal *uint64 `json:"depth_total"`
	LimitTotal *uint64 `json:"limit_total"`
	// Sockets is how many listening sockets matched the port.
	Sockets int `json:"sockets"`
	// Polls is how many fast polls the interval's DepthMax is based on.
	Polls uint64 `json:"polls"`
	// Abandoned counts connections waiting in the port's accept queue
	// whose client already closed them (CLOSE_WAIT children no process
	// owns yet): Valkey will accept them, and for TLS start a handshake,
	// for nobody. Same freshness as SynRecv (counts_age_ms).
	Abandoned *uint64 `json:"abandoned"`
	// OverflowsPort counts connections this listener dropped because its
	// accept queue was full, since the eBPF source started (null without
	// eBPF). Unlike tcp.listen_overflows it is not namespace-wide.
	OverflowsPort *uint64 `json:"overflows_port"`
}

// AcceptWait summarises the accept waits of one interval, in
// milliseconds; each is null when no connection was accepted.
type AcceptWait struct {
	P50 *float64 `json:"p50"`
	P99 *float64 `json:"p99"`
	Max *float64 `json:"max"`
}

// Histogram is a cumulative histogram: Counts[i] observations were at or
// below Bounds[i]; Count and Sum cover all observations.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// TCP holds the namespace-wide TCP counters (/proc/net/netstat and snmp).
// These are per network namespace, not per port.
type TCP struct {
	ListenOverflows   *uint64 `json:"listen_overflows"`
	ListenDrops       *uint64 `json:"listen_drops"`
	ReqQFullDrop      *uint64 `json:"reqq_full_drop"`
	ReqQFullDoCookies *uint64 `json:"reqq_full_do_cookies"`
	SyncookiesSent    *uint64 `json:"syncookies_sent"`
	SyncookiesRecv    *uint64 `json:"syncookies_recv"`
	SyncookiesFailed  *uint64 `json:"syncookies_failed"`
	SynRetrans        *uint64 `json:"syn_retrans"`
	PassiveOpens      *uint64 `json:"passive_opens"`
	ActiveOpens       *uint64 `json:"active_opens"`
	AttemptFails      *uint64 `json:"attempt_fails"`
	EstabResets       *uint64 `json:"estab_resets"`
	CurrEstab         *uint64 `json:"curr_estab"`
}

// Conntrack holds the connection-tracking table state of the namespace.
type Conntrack struct {
	Count        *uint64 `json:"count"`
	Max          *uint64 `json:"max"`
	Drop         *uint64 `json:"drop"`
	EarlyDrop    *uint64 `json:"early_drop"`
	InsertFailed *uint64 `json:"insert_failed"`
	// Via says where the numbers came from: "netlink" or "proc".
	Via string `json:"via"`
}

// Valkey holds fields read over the reserved connection.
type Valkey struct {
	ConnectedClients         *uint64  `json:"connected_clients"`
	MaxClients               *uint64  `json:"maxclients"`
	TotalConnectionsReceived *uint64  `json:"total_connections_received"`
	RejectedConnections      *uint64  `json:"rejected_connections"`
	PingMS                   *float64 `json:"ping_ms"`
	ClusterConnections       *uint64  `json:"cluster_connections"`
	BlockedClients           *uint64  `json:"blocked_clients"`
	EvictedClients           *uint64  `json:"evicted_clients"`
	TotalErrorReplies        *uint64  `json:"total_error_replies"`
	ACLAccessDeniedAuth      *uint64  `json:"acl_access_denied_auth"`
	UsedCPUSys               *float64 `json:"used_cpu_sys"`
	UsedCPUUser              *float64 `json:"used_cpu_user"`
	UsedMemory               *uint64  `json:"used_memory"`
	// Role is INFO replication's role as Valkey says it ("master",
	// "slave"); the API maps it to primary/replica (signal.RoleName).
	Role string `json:"role,omitempty"`
	// ClusterNodeID is CLUSTER MYID when cluster mode is on (read once
	// per connection, when calm).
	ClusterNodeID string  `json:"cluster_node_id,omitempty"`
	Version       string  `json:"version,omitempty"`
	TCPBacklog    *uint64 `json:"tcp_backlog,omitempty"`
	// Reconnects counts how often the reserved connection had to be re-opened.
	Reconnects uint64 `json:"reconnects"`
}

// NIC holds cloud NIC allowance counters (AWS ENA) summed over the
// interfaces that carry the target's traffic.
type NIC struct {
	Interfaces                  []string `json:"interfaces"`
	BwInAllowanceExceeded       *uint64  `json:"bw_in_allowance_exceeded"`
	BwOutAllowanceExceeded      *uint64  `json:"bw_out_allowance_exceeded"`
	PPSAllowanceExceeded        *uint64  `json:"pps_allowance_exceeded"`
	ConntrackAllowanceExceeded  *uint64  `json:"conntrack_allowance_exceeded"`
	LinklocalAllowanceExceeded  *uint64  `json:"linklocal_allowance_exceeded"`
	ConntrackAllowanceAvailable *uint64  `json:"conntrack_allowance_available"`
}

// Mitigation is the state of the mitigations the agent armed on a target.
type Mitigation struct {
	// Armed is how many mitigations are armed.
	Armed int `json:"armed"`
	// Dropped counts the packets (for the SYN rate limits: SYNs) the armed
	// rules have dropped so far, from their nftables counters. It starts
	// again from 0 when the rules are re-armed; nil when unreadable.
	Dropped *uint64 `json:"dropped"`
}

// U64 returns a pointer to v; a convenience for filling optional fields.
func U64(v uint64) *uint64 { return &v }

// Int returns a pointer to v.
func Int(v int) *int { return &v }

// F64 returns a pointer to v.
func F64(v float64) *float64 { return &v }
