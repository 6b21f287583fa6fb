package serve

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stormguard/stormguard/internal/sample"
)

// metricDef describes one metric mirrored from a Sample. The table is the
// single source of truth for /metrics and for docs/metrics.md.
type metricDef struct {
	Name   string
	Help   string
	Type   prometheus.ValueType
	Source string // which signal source fills it
	Get    func(*sample.Sample) *float64
}

func u(p *uint64) *float64 {
	if p == nil {
		return nil
	}
	v := float64(*p)
	return &v
}

func scaled(p *float64, k float64) *float64 {
	if p == nil {
		return nil
	}
	v := *p * k
	return &v
}

// Shorthands that are nil-safe on a group pointer.
func listen(f func(*sample.Listen) *uint64) func(*sample.Sample) *float64 {
	return func(s *sample.Sample) *float64 {
		if s.Listen == nil {
			return nil
		}
		return u(f(s.Listen))
	}
}
func tcp(f func(*sample.TCP) *uint64) func(*sample.Sample) *float64 {
	return func(s *sample.Sample) *float64 {
		if s.TCP == nil {
			return nil
		}
		return u(f(s.TCP))
	}
}
func ct(f func(*sample.Conntrack) *uint64) func(*sample.Sample) *float64 {
	return func(s *sample.Sample) *float64 {
		if s.Conntrack == nil {
			return nil
		}
		return u(f(s.Conntrack))
	}
}
func vk(f func(*sample.Valkey) *uint64) func(*sample.Sample) *float64 {
	return func(s *sample.Sample) *float64 {
		if s.Valkey == nil {
			return nil
		}
		return u(f(s.Valkey))
	}
}
func nic(f func(*sample.NIC) *uint64) func(*sample.Sample) *float64 {
	return func(s *sample.Sample) *float64 {
		if s.NIC == nil {
			return nil
		}
		return u(f(s.NIC))
	}
}

// acceptWaitHelp is the HELP of stormguard_accept_wait_seconds.
const acceptWaitHelp = "Time connections waited in the target's accept queue, from the handshake completing to accept() (eBPF; histogram since the agent started)."

const (
	counter = prometheus.CounterValue
	gauge   = prometheus.GaugeValue
)

// sampleMetrics mirrors the Sample. Kernel counters keep their kernel
// meaning; TCP and conntrack counters are per network namespace, not per
// port, which the HELP text says.
var sampleMetrics = []metricDef{
	{"stormguard_listen_queue_length", "Accept-queue length of the target's listening socket(s) at the sample instant.", gauge, "listenq", listen(func(l *sample.Listen) *uint64 { return l.Depth })},
	{"stormguard_listen_queue_peak_length", "Largest accept-queue length seen by the fast poller during the last sampling interval.", gauge, "listenq", listen(func(l *sample.Listen) *uint64 { return l.DepthMax })},
	{"stormguard_listen_queue_limit", "Accept-queue limit of the target's listening socket(s): min(backlog, somaxconn).", gauge, "listenq", listen(func(l *sample.Listen) *uint64 { return l.Limit })},
	{"stormguard_syn_recv_sockets", "Request sockets in SYN_RECV for the target port.", gauge, "listenq", func(s *sample.Sample) *float64 { return u(s.SynRecv) }},
	{"stormguard_listen_overflows_port_total", "Connections this listener (not the namespace) dropped because its accept queue was full: the kernel's drop counter of the port's listening sockets (eBPF).", counter, "ebpf", listen(func(l *sample.Listen) *uint64 { return l.OverflowsPort })},
	{"stormguard_syn_rate", "SYNs per second to the target port over the last sampling interval (eBPF).", gauge, "ebpf", func(s *sample.Sample) *float64 { return s.SynRate }},
	{"stormguard_established_sockets", "ESTABLISHED sockets whose local port is the target port.", gauge, "listenq", func(s *sample.Sample) *float64 { return u(s.Established) }},
	{"stormguard_listen_abandoned_connections", "Connections waiting in the target port's accept queue whose client already closed them (CLOSE_WAIT, not yet accepted).", gauge, "listenq", listen(func(l *sample.Listen) *uint64 { return l.Abandoned })},
	{"stormguard_handshake_pending_connections", "Connections Valkey accepted during the last sampling interval that did not become clients by its end (TLS handshakes running or given up): eBPF accepts minus total_connections_received and rejected_connections growth.", gauge, "ebpf", func(s *sample.Sample) *float64 { return u(s.HandshakePending) }},

	{"stormguard_tcp_listen_overflows_total", "TcpExt ListenOverflows of the target's network namespace (not per port): SYNs or final ACKs dropped because an accept queue was full.", counter, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.ListenOverflows })},
	{"stormguard_tcp_listen_drops_total", "TcpExt ListenDrops of the target's network namespace: every drop at a listener.", counter, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.ListenDrops })},
	{"stormguard_tcp_reqq_full_drops_total", "TcpExt TCPReqQFullDrop: SYNs dropped because a SYN queue was full and syncookies were off.", counter, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.ReqQFullDrop })},
	{"stormguard_tcp_reqq_full_cookies_total", "TcpExt TCPReqQFullDoCookies: SYN cookies sent because a SYN queue was full.", counter, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.ReqQFullDoCookies })},
	{"stormguard_tcp_syncookies_sent_total", "TcpExt SyncookiesSent of the target's network namespace.", counter, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.SyncookiesSent })},
	{"stormguard_tcp_syncookies_recv_total", "TcpExt SyncookiesRecv: valid cookie ACKs received.", counter, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.SyncookiesRecv })},
	{"stormguard_tcp_syncookies_failed_total", "TcpExt SyncookiesFailed: invalid cookie ACKs received.", counter, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.SyncookiesFailed })},
	{"stormguard_tcp_syn_retransmits_total", "TcpExt TCPSynRetrans: SYN and SYN-ACK retransmissions.", counter, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.SynRetrans })},
	{"stormguard_tcp_passive_opens_total", "Tcp PassiveOpens: handshakes completed on any listener of the namespace (admitted connections, not SYNs).", counter, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.PassiveOpens })},
	{"stormguard_tcp_active_opens_total", "Tcp ActiveOpens: connections this namespace dialled.", counter, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.ActiveOpens })},
	{"stormguard_tcp_attempt_fails_total", "Tcp AttemptFails: connection attempts that failed in SYN-SENT or SYN-RECV.", counter, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.AttemptFails })},
	{"stormguard_tcp_estab_resets_total", "Tcp EstabResets: established connections reset.", counter, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.EstabResets })},
	{"stormguard_tcp_current_established", "Tcp CurrEstab: ESTABLISHED plus CLOSE-WAIT connections in the namespace.", gauge, "tcp", tcp(func(t *sample.TCP) *uint64 { return t.CurrEstab })},

	{"stormguard_conntrack_entries", "Connection-tracking entries in the target's network namespace.", gauge, "conntrack", ct(func(c *sample.Conntrack) *uint64 { return c.Count })},
	{"stormguard_conntrack_entries_limit", "nf_conntrack_max: the table's size limit (global).", gauge, "conntrack", ct(func(c *sample.Conntrack) *uint64 { return c.Max })},
	{"stormguard_conntrack_drops_total", "Packets dropped because the conntrack table was full (summed over CPUs).", counter, "conntrack", ct(func(c *sample.Conntrack) *uint64 { return c.Drop })},
	{"stormguard_conntrack_early_drops_total", "Unassured conntrack entries evicted to make room (summed over CPUs).", counter, "conntrack", ct(func(c *sample.Conntrack) *uint64 { return c.EarlyDrop })},
	{"stormguard_conntrack_insert_failed_total", "Conntrack entries that failed to insert (races; summed over CPUs).", counter, "conntrack", ct(func(c *sample.Conntrack) *uint64 { return c.InsertFailed })},

	{"stormguard_valkey_connected_clients", "Valkey INFO connected_clients (excluding replicas).", gauge, "valkey", vk(func(v *sample.Valkey) *uint64 { return v.ConnectedClients })},
	{"stormguard_valkey_maxclients", "Valkey maxclients.", gauge, "valkey", vk(func(v *sample.Valkey) *uint64 { return v.MaxClients })},
	{"stormguard_valkey_connections_received_total", "Valkey INFO total_connections_received: connections admitted.", counter, "valkey", vk(func(v *sample.Valkey) *uint64 { return v.TotalConnectionsReceived })},
	{"stormguard_valkey_rejected_connections_total", "Valkey INFO rejected_connections: connections refused at maxclients (or protected mode).", counter, "valkey", vk(func(v *sample.Valkey) *uint64 { return v.RejectedConnections })},
	{"stormguard_valkey_cluster_connections", "Valkey INFO cluster_connections (they count against maxclients).", gauge, "valkey", vk(func(v *sample.Valkey) *uint64 { return v.ClusterConnections })},
	{"stormguard_valkey_blocked_clients", "Valkey INFO blocked_clients.", gauge, "valkey", vk(func(v *sample.Valkey) *uint64 { return v.BlockedClients })},
	{"stormguard_valkey_evicted_clients_total", "Valkey INFO evicted_clients: clients evicted for memory.", counter, "valkey", vk(func(v *sample.Valkey) *uint64 { return v.EvictedClients })},
	{"stormguard_valkey_error_replies_total", "Valkey INFO total_error_replies.", counter, "valkey", vk(func(v *sample.Valkey) *uint64 { return v.TotalErrorReplies })},
	{"stormguard_valkey_acl_access_denied_auth_total", "Valkey INFO acl_access_denied_auth: failed AUTH (e.g. reconnecting clients with stale credentials).", counter, "valkey", vk(func(v *sample.Valkey) *uint64 { return v.ACLAccessDeniedAuth })},
	{"stormguard_valkey_ping_seconds", "Round trip of PING over stormguard's reserved connection.", gauge, "valkey", func(s *sample.Sample) *float64 {
		if s.Valkey == nil {
			return nil
		}
		return scaled(s.Valkey.PingMS, 1e-3)
	}},
	{"stormguard_valkey_reserved_reconnects_total", "Times stormguard had to re-open its reserved Valkey connection.", counter, "valkey", func(s *sample.Sample) *float64 {
		if s.Valkey == nil {
			return nil
		}
		v := float64(s.Valkey.Reconnects)
		return &v
	}},

	{"stormguard_nic_bw_in_allowance_exceeded_total", "ENA bw_in_allowance_exceeded: inbound packets queued or dropped over the instance bandwidth.", counter, "nic", nic(func(n *sample.NIC) *uint64 { return n.BwInAllowanceExceeded })},
	{"stormguard_nic_bw_out_allowance_exceeded_total", "ENA bw_out_allowance_exceeded: outbound packets queued or dropped over the instance bandwidth.", counter, "nic", nic(func(n *sample.NIC) *uint64 { return n.BwOutAllowanceExceeded })},
	{"stormguard_nic_pps_allowance_exceeded_total", "ENA pps_allowance_exceeded: packets over the instance PPS allowance.", counter, "nic", nic(func(n *sample.NIC) *uint64 { return n.PPSAllowanceExceeded })},
	{"stormguard_nic_conntrack_allowance_exceeded_total", "ENA conntrack_allowance_exceeded: packets dropped at the instance's tracked-connection maximum.", counter, "nic", nic(func(n *sample.NIC) *uint64 { return n.ConntrackAllowanceExceeded })},
	{"stormguard_nic_linklocal_allowance_exceeded_total", "ENA linklocal_allowance_exceeded: packets to DNS/IMDS/NTP over the per-ENI limit.", counter, "nic", nic(func(n *sample.NIC) *uint64 { return n.LinklocalAllowanceExceeded })},
	{"stormguard_nic_conntrack_allowance_available", "ENA conntrack_allowance_available: tracked connections left before the allowance.", gauge, "nic", nic(func(n *sample.NIC) *uint64 { return n.ConntrackAllowanceAvailable })},
}
