package detect

import "time"

// Scope says how far a signal's number reaches (Principle 0 in docs/detector.md).
type Scope string

const (
	// ScopePort: this listener's own socket (accept queue, SYN_RECV).
	ScopePort Scope = "port"
	// ScopeInstance: this Valkey instance (INFO over the reserved connection).
	ScopeInstance Scope = "instance"
	// ScopeNamespace: shared by every listener in the network namespace
	// (TCP SNMP counters, conntrack).
	ScopeNamespace Scope = "namespace"
	// ScopeNIC: the host's network interface (cloud NIC allowances).
	ScopeNIC Scope = "nic"
)

// Level is the state a signal pushes towards.
type Level string

const (
	// LevelSurge: early warning.
	LevelSurge Level = "surge"
	// LevelStorm: connections are being dropped or refused now.
	LevelStorm Level = "storm"
)

// Signal is one active reason for surge or storm in one sample.
type Signal struct {
	// Name is stable and machine-readable, e.g. "listen_drops",
	// "accept_queue_full", "new_conn_rate", "forecast_conntrack_full".
	Name  string `json:"name"`
	Level Level  `json:"level"`
	Scope Scope  `json:"scope"`
	// Value and Threshold are in Unit ("conn/s", "ratio", "s", "ms"…).
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	Unit      string  `json:"unit"`
	// PerPortEvidence is true when this port's own socket backs the signal
	// (its scope is port, or a namespace-wide counter was corroborated by
	// this port's accept queue or SYN_RECV).
	PerPortEvidence bool `json:"per_port_evidence"`
	// Text is a short phrase for humans: "accept queue full (64/64)",
	// rendered from the values after evaluation (see text.go).
	Text string `json:"text"`

	// What the rule saw beyond Value and Threshold, for the text only.
	detail detail
	base   *float64 // the baseline Value was compared with
	risk   detail   // new_conn_rate: what puts capacity at risk
	// startDepth: listen_drops blamed on the queue the interval began with.
	startDepth uint64
	// say renders Text (set by the rule that raised the signal).
	say sayFunc
}

// Rates are per-second rates derived from consecutive cumulative counters.
// Nil: the counter is unavailable, was reset in this interval, or this is
// its first reading.
type Rates struct {
	PassiveOpens              *float64 `json:"passive_opens"`
	ValkeyConnections         *float64 `json:"valkey_connections"`
	ListenOverflows           *float64 `json:"listen_overflows"`
	ListenDrops               *float64 `json:"listen_drops"`
	ReqQFullDrop              *float64 `json:"reqq_full_drop"`
	ReqQFullDoCookies         *float64 `json:"reqq_full_do_cookies"`
	SynRetrans                *float64 `json:"syn_retrans"`
	AttemptFails              *float64 `json:"attempt_fails"`
	ConntrackDrop             *float64 `json:"conntrack_drop"`
	ConntrackEarlyDrop        *float64 `json:"conntrack_early_drop"`
	ConntrackInsertFailed     *float64 `json:"conntrack_insert_failed"`
	NICConntrackAllowance     *float64 `json:"nic_conntrack_allowance_exceeded"`
	NICPPSAllowance           *float64 `json:"nic_pps_allowance_exceeded"`
	ValkeyRejectedConnections *float64 `json:"valkey_rejected_connections"`
	// MitigationDrops: packets (SYNs) dropped by the mitigations
	// stormguard armed on this target.
	MitigationDrops *float64 `json:"mitigation_drops"`
	// PortOverflows: connections this listener's own sockets dropped
	// (listen.overflows_port, eBPF), a per-port count of what
	// ListenDrops counts for the whole namespace.
	PortOverflows *float64 `json:"overflows_port"`
}

// Forecasts are seconds until a resource runs out at its growth rate over
// Config.ForecastWindow. Nil: not growing, or unknown.
type Forecasts struct {
	ConntrackFullS  *float64 `json:"conntrack_full_s"`
	AcceptFullS     *float64 `json:"accept_queue_full_s"`
	MaxclientsFullS *float64 `json:"maxclients_full_s"`
}

// View is the detector's derived picture of one sample, for the agent,
// metrics and UI. Pointers are nil when the input was unavailable.
type View struct {
	Time   time.Time `json:"time"`
	Target string    `json:"target"`
	State  State     `json:"state"`
	// Since is when the target entered State.
	Since time.Time `json:"since"`
	// IntervalS is the time since the previous sample, in seconds.
	IntervalS float64 `json:"interval_s"`

	Rates Rates `json:"rates"`

	// NewConnRate is the new-connection rate the surge rule watches,
	// averaged over Config.RateWindow: tcp.passive_opens (namespace-wide)
	// when available, else valkey.total_connections_received (this
	// instance).
	NewConnRate *float64 `json:"new_conn_rate"`
	// NewConnRateInstance is Valkey's own accept rate over RateWindow.
	NewConnRateInstance *float64 `json:"new_conn_rate_instance"`
	NewConnSource       string   `json:"new_conn_source,omitempty"`
	NewConnScope        Scope    `json:"new_conn_scope,omitempty"`
	NewConnBaseline     *float64 `json:"new_conn_baseline"`
	NewConnThreshold    *float64 `json:"new_conn_threshold"`
	// DroppedRate sums the available drop/refusal rates: kernel listen
	// drops, conntrack drops, NIC conntrack allowance, Valkey rejections,
	// SYNs dropped by stormguard's own mitigation.
	DroppedRate *float64 `json:"dropped_rate"`

	AcceptDepth     *uint64  `json:"accept_depth"`
	AcceptDepthMax  *uint64  `json:"accept_depth_max"`
	AcceptLimit     *uint64  `json:"accept_limit"`
	AcceptOccupancy *float64 `json:"accept_occupancy"`
	SynRecv         *uint64  `json:"syn_recv"`

	ConntrackCount     *uint64  `json:"conntrack_count"`
	ConntrackMax       *uint64  `json:"conntrack_max"`
	ConntrackOccupancy *float64 `json:"conntrack_occupancy"`

	ConnectedClients *uint64  `json:"connected_clients"`
	MaxClients       *uint64  `json:"maxclients"`
	ClientsOccupancy *float64 `json:"clients_occupancy"`

	PingMS         *float64 `json:"ping_ms"`
	PingBaselineMS *float64 `json:"ping_baseline_ms"`

	// AcceptWaitP99MS is the 99th percentile of how long the
	// connections Valkey accepted this interval waited in its accept
	// queue (eBPF source; nil when it is off or nothing was accepted),
	// and AcceptWaitBaselineMS its level learned in calm.
	AcceptWaitP99MS      *float64 `json:"accept_wait_p99_ms"`
	AcceptWaitBaselineMS *float64 `json:"accept_wait_baseline_ms"`

	Forecasts Forecasts `json:"forecasts"`

	// Resets lists counters that went down in this interval (restart,
	// driver reset): no rate for them this time.
	Resets []string `json:"resets,omitempty"`
	// Signals are the surge and storm signals active in this sample
	// (omitted inside Event.Evidence, which lists them itself).
	Signals []Signal `json:"signals,omitempty"`
}
