package lab

// Result is what one run measured. The first eight fields are the
// contract of `stormguard storm --json`.
type Result struct {
	Strategy           string `json:"strategy"`
	Clients            int    `json:"clients"`
	ConnectAttempts    int64  `json:"connect_attempts"`
	ConnectFailures    int64  `json:"connect_failures"`
	PeakConnectsPerSec int64  `json:"peak_connects_per_sec"`
	// TimeToRecoverMS is null when fewer than 99% of clients recovered.
	TimeToRecoverMS *int64 `json:"time_to_recover_ms"`
	FailedCommands  int64  `json:"failed_commands"`
	// ListenOverflows is null when the counter could not be read.
	ListenOverflows *uint64 `json:"listen_overflows"`

	Scenario              string  `json:"scenario"`
	Instances             int     `json:"instances"`
	SourceAddrs           int     `json:"source_addrs"`
	Target                string  `json:"target"`
	RecoveredClients      int     `json:"recovered_clients"`
	RecoverP50MS          *int64  `json:"recover_p50_ms"`
	RecoverMaxMS          *int64  `json:"recover_max_ms"`
	PeakConnects1s        int64   `json:"peak_connects_1s"`
	ConnectsPerSec        float64 `json:"connects_per_sec"`
	DurationMS            int64   `json:"duration_ms"`
	ListenOverflowsSource string  `json:"listen_overflows_source"`
	ListenDrops           *uint64 `json:"listen_drops"`
	RejectedConnections   *uint64 `json:"rejected_connections"`
	ConnectionsReceived   *uint64 `json:"total_connections_received"`
	ValkeyCountersReset   bool    `json:"valkey_counters_reset,omitempty"`
	KilledClients         *int64  `json:"killed_clients,omitempty"`
	WarmupConnectAttempts int64   `json:"warmup_connect_attempts"`
	// ConnectsSource says where connect_attempts, connect_failures and
	// the timeline come from: the lab's dial hook, or (valkey-glide) the
	// kernel's Tcp counters of the namespace.
	ConnectsSource string `json:"connects_source"`
	// Timeline is dials per 100ms from the baselines just before the
	// disruption to the end.
	Timeline []int64 `json:"timeline_100ms"`
	// Hosts is the number of client hosts (0: clients in the server's
	// namespace), HostAddrs their addresses, RTTMS and LossPercent the
	// shaping of their link.
	Hosts       int      `json:"hosts"`
	HostAddrs   []string `json:"host_addrs,omitempty"`
	RTTMS       *float64 `json:"rtt_ms"`
	LossPercent float64  `json:"loss_percent"`
	// RTTMethod says what delays the hosts' link: "netem", or "delay
	// line" (user space, where the kernel has no netem); null without
	// RTTMS.
	RTTMethod *string `json:"rtt_method"`
	// PingRTTP50MS and PingRTTP99MS are the round trips (sent → reply) of
	// the PINGs completed during the hold (±1%): what the fleet's link
	// and the server add, to compare with RTTMS; null without a hold
	// (churn).
	PingRTTP50MS *float64 `json:"ping_rtt_p50_ms"`
	PingRTTP99MS *float64 `json:"ping_rtt_p99_ms"`
	// GoodputBefore is completed commands/s in the second before the
	// disruption; GoodputMinRatio the lowest one-second rate after it,
	// GoodputEndRatio the last second's, both as a share of before.
	GoodputBefore   *float64 `json:"goodput_before"`
	GoodputMinRatio *float64 `json:"goodput_min_ratio"`
	GoodputEndRatio *float64 `json:"goodput_end_ratio"`
	// GoodputBackMS is when (ms after t0) the first one-second window
	// with at least 80% of GoodputBefore ended; null if none did.
	GoodputBackMS *int64 `json:"goodput_back_ms"`
	// DisruptMS is how long the scenario took from its start to marking
	// t0 (e.g. until Valkey answered the CLIENT KILL); goodput_before
	// ends at the start.
	DisruptMS int64 `json:"disrupt_ms"`
	// FailoverTo and PromoteMS (failover scenario): the promoted
	// replica's address and how long after the kill its REPLICAOF NO ONE
	// was answered.
	FailoverTo string `json:"failover_to,omitempty"`
	PromoteMS  *int64 `json:"promote_ms,omitempty"`
	// AgentEvents are the events of the agent that watched the run
	// (Config.Watch: storm --defuse auto), times relative to t0.
	AgentEvents []AgentEvent `json:"agent_events,omitempty"`
	// Recovered: RecoverQuantile of the clients completed a command sent
	// after the disruption within Duration (TimeToRecoverMS is then set).
	Recovered bool `json:"recovered"`
	// ServerCPUPercent is valkey-server's CPU (INFO cpu, user+system)
	// from the disruption to the end, in percent of one CPU.
	ServerCPUPercent *float64 `json:"server_cpu_percent"`
	// ServerCPUs and ClientCPUs are the CPU lists the server and the
	// clients were pinned to (ServerCPUs), if any.
	ServerCPUs string `json:"server_cpus,omitempty"`
	ClientCPUs string `json:"client_cpus,omitempty"`
	// Somaxconn and TCPBacklog are the spawned server's net.core.somaxconn
	// (read in its namespace) and tcp-backlog (Spawn.TCPBacklog or
	// Valkey's default, 511): its accept queue holds the smaller. Absent
	// without Spawn. simulate --calibrate fits the lab run with them.
	Somaxconn  *int `json:"somaxconn,omitempty"`
	TCPBacklog *int `json:"tcp_backlog,omitempty"`
	// TimelinePoints is the run per 100ms bucket from a second before the
	// disruption to the end.
	TimelinePoints []Point `json:"timeline"`
	// TLS: every connection spoke TLS (connects count the handshake).
	TLS bool `json:"tls"`
	// Setup is what each new connection sent before its first PING
	// (valkey-glide always sends HELLO 3 and CLIENT SETINFO).
	Setup  string            `json:"setup"`
	Errors map[string]string `json:"errors,omitempty"`
}
