package simulate

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("bad simulation configuration")

// Model is the server side of a simulation: the kernel's queues and
// timers on the Valkey host, and Valkey's accept loop. Zero fields mean
// the defaults in DefaultModel. Durations are CPU time on Valkey's main
// thread unless said otherwise.
type Model struct {
	// Somaxconn and TCPBacklog: the accept queue holds
	// min(TCPBacklog, Somaxconn) connections.
	Somaxconn  int `json:"somaxconn"`
	TCPBacklog int `json:"tcp_backlog"`
	// Syncookies: with cookies (1, the default) a SYN that finds the SYN
	// queue full is answered with a cookie and leaves no request socket
	// (no SYN-ACK retransmits); without, it is dropped.
	Syncookies bool `json:"syncookies"`
	// AbortOnOverflow (tcp_abort_on_overflow): a final ACK that finds the
	// accept queue full resets the connection instead of being dropped.
	AbortOnOverflow bool `json:"abort_on_overflow"`
	// SynRetries, SynLinearTimeouts: the client's SYN retransmits
	// (tcp_syn_retries 6, tcp_syn_linear_timeouts 4: RTOs 1,1,1,1,1,2,4… s).
	SynRetries        int `json:"syn_retries"`
	SynLinearTimeouts int `json:"syn_linear_timeouts"`
	// SynackRetries: the server's SYN-ACK retransmits after a dropped final
	// ACK (tcp_synack_retries 5: 1, 2, 4, 8, 16 s apart).
	SynackRetries int `json:"synack_retries"`
	// NetdevBacklog is the client host's net.core.netdev_max_backlog
	// when clients and Valkey share a loopback (the lab; 0: no limit, a
	// fleet on many hosts): a retransmit timer that fires sends its
	// segment into the CPU's backlog, and the timer softirq runs every
	// timer of the tick before NET_RX gets to the backlog, so a tick's
	// retransmits beyond this many are dropped (softnet_stat "dropped";
	// no ListenOverflows): a SYN lost so waits for its next retransmit,
	// 1 s later, and reaches the 2 s connect timeout.
	NetdevBacklog int `json:"netdev_backlog"`
	// RTT is the network round trip (loopback: 50µs).
	RTT time.Duration `json:"rtt_ns"`
	// HZ is the Valkey host's CONFIG_HZ: TCP's retransmit timers fire on
	// the timer wheel's ticks (wheel.go), so retransmits leave in
	// batches. 250 by default (the lab's host, Debian's and Ubuntu's
	// kernels); -1: exact timeouts.
	HZ int `json:"hz"`
	// MaxNewConnsPerCycle, MaxNewTLSConnsPerCycle: Valkey's
	// max-new-connections-per-cycle (10) and max-new-tls-connections-per-cycle (1).
	MaxNewConnsPerCycle    int `json:"max_new_connections_per_cycle"`
	MaxNewTLSConnsPerCycle int `json:"max_new_tls_connections_per_cycle"`
	// TLS: every connection is TLS (per-cycle cap for TLS, TLSCost each,
	// one more loop turn before the first reply).
	TLS bool `json:"tls"`
	// CycleCost is one event-loop turn's fixed cost while it accepts.
	CycleCost time.Duration `json:"cycle_cost_ns"`
	// ConnCost is the cost of one accepted connection (accept, register,
	// its first command, its close when abandoned).
	ConnCost time.Duration `json:"conn_cost_ns"`
	// KillCost is Valkey's CPU per client freed by CLIENT KILL (a
	// kill): the event loop accepts nothing until the command returns.
	// Measured by Valkey's own INFO commandstats: 7–16 µs per client for
	// 6,000–15,000 idle clients on the lab's 2-core VM at load 1–4 (the
	// earlier 38–51 µs were the command's round trip at load ~10, CPU
	// contention included, which the host model adds: host.go).
	KillCost time.Duration `json:"kill_cost_ns"`
	// ExitCost is how long a killed valkey-server's exit takes per
	// client connection (a restart): the kernel closes the dead
	// process's sockets one after another, the clients' first and its
	// listener last, so until the last close the listener takes SYNs
	// that nothing accepts — the clients that noticed their close and
	// redialled fill the accept queue, the rest overflow (their SYNs are
	// dropped and retransmitted 1 s later), and the queued connections
	// are reset when the listener closes. Measured on the lab's host
	// (SIGKILL of a valkey-server pinned to CPU 1 holding 10,000 and
	// 15,000 idle connections, a client on CPU 0 timing their EOFs,
	// 2026-12-03 09:01–09:06 UTC, load 1.1–1.3, twelve runs): 8.2–14.5
	// µs per connection, 10.7 µs the median; a SYN sent during the exit
	// was never refused before the last close.
	ExitCost time.Duration `json:"exit_cost_ns"`
	// NoticeCost and DialCost are the client side's CPU for noticing a
	// lost connection and for one connect(), when the fleet is one load
	// generator (the lab): it does them one after another, so a kill's
	// closes reach a fleet that redials at once more slowly than one that
	// waits (see generator.go). 0: a fleet on many hosts, no queue.
	// --calibrate fits both from the lab's timeline.
	NoticeCost time.Duration `json:"notice_cost_ns"`
	DialCost   time.Duration `json:"dial_cost_ns"`
	// RefusedDialCost is the client side's CPU for a dial a down server
	// refuses (a restart), measured on its own (bench/simulate_clientcost.sh
	// ONLY=dials: the lab client's net.Dialer refused, 9.8–11.6 µs on the
	// lab's host, a tight loop, so a running cost as DialCost is). 0:
	// refusedDialShare of DialCost. The kill a fit reads has no refused
	// dial, so no fit sets it.
	RefusedDialCost time.Duration `json:"refused_dial_cost_ns,omitempty"`
	// AnswerCost is the client side's CPU for finishing a connect
	// (writing the first PING) and for reading its answer, each (0: as
	// NoticeCost).
	AnswerCost time.Duration `json:"answer_cost_ns"`
	// ClientBurst is how bursty that client side is: the busiest 100 ms
	// of its work over its mean (1 or 0: even; the lab's kills were
	// 1.3–2.9, the generator and Valkey descheduled in turns on a shared
	// machine).
	ClientBurst float64 `json:"client_burst"`
	// ClientShare is the share of Valkey's CPU the load generator takes
	// while it has work (0..0.9): on the lab's shared cores Valkey
	// accepted little while the fleet redialled at once, and its CLIENT
	// KILL ran slower. It stretches accept turns and the kill alike.
	// --calibrate fits it.
	ClientShare float64 `json:"client_share"`
	// HostCores, ClientCPU and HostLoad model a host that Valkey shares
	// with the load generator and other work, whose competition grows
	// with the fleet (see host.go). HostCores is how many cores they share
	// (the lab: the machine's; 0: Valkey has its cores to itself, and
	// ClientShare applies instead). ClientCPU is the client side's CPU
	// per connected client per Period — its PING round trip, timers and
	// runtime work for that connection — so a fleet of N connected
	// clients keeps N·ClientCPU/Period cores busy, and a generator with
	// queued work (noticing closes, dialling) wants one more core.
	// HostLoad is the other runnable threads on the host (other
	// processes: part of the machine's load average). Valkey's main
	// thread gets its fair share of the cores among all of them.
	// --calibrate fits ClientCPU and HostLoad.
	HostCores int           `json:"host_cores"`
	ClientCPU time.Duration `json:"client_cpu_ns"`
	HostLoad  float64       `json:"host_load"`
	// TLSCost is one TLS handshake.
	TLSCost time.Duration `json:"tls_cost_ns"`
	// CmdCost is one command of an established client: with N clients
	// each sending a command every Period the loop is N·CmdCost/Period
	// busy before it accepts anything.
	CmdCost time.Duration `json:"cmd_cost_ns"`
	// CmdCostMeasured: CmdCost was measured (INFO commandstats or INFO
	// cpu per PING, bench/simulate_clientcost.sh: 6.0–6.1 µs on the lab's
	// pinned Valkey) and Calibrate keeps it instead of fitting it.
	CmdCostMeasured bool `json:"cmd_cost_measured,omitempty"`
	// ConnCostMeasured: ConnCost was measured (Valkey's INFO cpu per
	// accepted connection, bench/simulate_clientcost.sh ONLY=accepts:
	// 7.3–8.0 µs on the lab's pinned Valkey, fresh or after a kill) and
	// Calibrate keeps it instead of fitting it.
	ConnCostMeasured bool `json:"conn_cost_measured,omitempty"`
	// ClientDialRate caps the connect() calls per second of the whole
	// client side (0: unlimited, a real fleet on many hosts). A load
	// generator on one machine has such a cap; --calibrate fits it.
	ClientDialRate float64 `json:"client_dial_rate"`
}

// DefaultModel is a Linux ≥ 6.5 host with kernel defaults except
// somaxconn 128 and Valkey 8 defaults; the costs are rough values for a
// small VM (calibrate them with --calibrate).
func DefaultModel() Model {
	return Model{
		Somaxconn: 128, TCPBacklog: 511, Syncookies: true,
		SynRetries: 6, SynLinearTimeouts: 4, SynackRetries: 5,
		RTT: 50 * time.Microsecond, HZ: 250,
		MaxNewConnsPerCycle: 10, MaxNewTLSConnsPerCycle: 1,
		CycleCost: 20 * time.Microsecond, ConnCost: 60 * time.Microsecond,
		TLSCost: 1800 * time.Microsecond, CmdCost: 2 * time.Microsecond,
		KillCost: 16 * time.Microsecond, ExitCost: 10700 * time.Nanosecond,
	}
}

// withDefaults fills zero fields from DefaultModel (booleans are taken
// as given).
func (m Model) withDefaults() Model {
	d := DefaultModel()
	fillI := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	fillD := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	fillI(&m.Somaxconn, d.Somaxconn)
	fillI(&m.TCPBacklog, d.TCPBacklog)
	fillI(&m.SynRetries, d.SynRetries)
	fillI(&m.HZ, d.HZ)
	fillI(&m.SynackRetries, d.SynackRetries)
	fillI(&m.MaxNewConnsPerCycle, d.MaxNewConnsPerCycle)
	fillI(&m.MaxNewTLSConnsPerCycle, d.MaxNewTLSConnsPerCycle)
	fillD(&m.RTT, d.RTT)
	fillD(&m.CycleCost, d.CycleCost)
	fillD(&m.ConnCost, d.ConnCost)
	fillD(&m.TLSCost, d.TLSCost)
	fillD(&m.KillCost, d.KillCost)
	fillD(&m.ExitCost, d.ExitCost)
	return m
}

// Validate reports the first impossible value.
func (m Model) Validate() error {
	switch {
	case m.Somaxconn < 0 || m.TCPBacklog < 0:
		return fmt.Errorf("%w: somaxconn and tcp-backlog must not be negative", ErrConfig)
	case m.HZ < -1 || m.HZ > 10000:
		return fmt.Errorf("%w: HZ must be within 1..10000 (-1: exact timeouts)", ErrConfig)
	case m.NetdevBacklog < 0:
		return fmt.Errorf("%w: netdev backlog must not be negative", ErrConfig)
	case m.SynRetries < 0 || m.SynLinearTimeouts < 0 || m.SynackRetries < 0:
		return fmt.Errorf("%w: SYN and SYN-ACK retries must not be negative", ErrConfig)
	case m.MaxNewConnsPerCycle < 0 || m.MaxNewConnsPerCycle > 1000 || m.MaxNewTLSConnsPerCycle < 0 || m.MaxNewTLSConnsPerCycle > 1000:
		return fmt.Errorf("%w: max-new-(tls-)connections-per-cycle must be within 1..1000", ErrConfig)
	case m.RTT < 0 || m.CycleCost < 0 || m.ConnCost < 0 || m.TLSCost < 0 || m.CmdCost < 0 || m.KillCost < 0 || m.ExitCost < 0 || m.NoticeCost < 0 || m.DialCost < 0 || m.RefusedDialCost < 0 || m.AnswerCost < 0:
		return fmt.Errorf("%w: RTT and costs must not be negative", ErrConfig)
	// The float ranges are written as !(in range) so that NaN, which
	// fails every comparison, is rejected too.
	case !(m.ClientShare >= 0 && m.ClientShare <= 0.9):
		return fmt.Errorf("%w: client share must be within 0..0.9, got %g", ErrConfig, m.ClientShare)
	case !(m.ClientBurst >= 0 && m.ClientBurst <= 100):
		return fmt.Errorf("%w: client burst must be within 0..100, got %g", ErrConfig, m.ClientBurst)
	case m.HostCores < 0 || m.HostCores > 1024 || m.ClientCPU < 0 || !(m.HostLoad >= 0 && m.HostLoad <= 64):
		return fmt.Errorf("%w: host cores must be within 0..1024, client CPU not negative, host load within 0..64", ErrConfig)
	case !(m.ClientDialRate >= 0 && !math.IsInf(m.ClientDialRate, 1)):
		return fmt.Errorf("%w: client dial rate must be a finite number ≥ 0, got %g", ErrConfig, m.ClientDialRate)
	}
	return nil
}

// acceptLimit is the accept queue's limit, min(tcp-backlog, somaxconn):
// sk_max_ack_backlog, what ss and inet_diag report.
func (m Model) acceptLimit() int { return min(m.Somaxconn, m.TCPBacklog) }

// synqFull is inet_csk_reqsk_queue_is_full: more request sockets than
// the accept queue's limit (qlen > sk_max_ack_backlog since Linux 6.13,
// commit 3479c7549fb1, backported to the stable kernels; ≥ before). With
// cookies a SYN that finds it full is answered with a cookie instead.
func (m Model) synqFull(qlen int) bool { return qlen > m.acceptLimit() }

// acceptFull is sk_acceptq_is_full: the kernel tests depth > limit, not
// ≥, so a queue of limit 128 holds 129 connections before a SYN or a
// final ACK is dropped (the lab's timelines admit batches of exactly 129
// at somaxconn 128).
func (m Model) acceptFull(depth int) bool { return depth > m.acceptLimit() }

// AcceptRate is the model's best-case accept rate with an idle loop:
// connections per second when every turn accepts its cap.
func (m Model) AcceptRate() float64 {
	m = m.withDefaults()
	per, cost := m.MaxNewConnsPerCycle, m.ConnCost
	if m.TLS {
		per, cost = m.MaxNewTLSConnsPerCycle, m.ConnCost+m.TLSCost
	}
	turn := m.CycleCost + time.Duration(per)*cost
	return float64(per) / turn.Seconds()
}

// synRTO is the client's wait before SYN retransmit k (1-based).
func (m Model) synRTO(k int) time.Duration {
	if k <= m.SynLinearTimeouts {
		return time.Second
	}
	return time.Second << min(k-m.SynLinearTimeouts, 20)
}

// synackRTO is the server's wait before SYN-ACK retransmit k (1-based).
func (m Model) synackRTO(k int) time.Duration { return time.Second << min(k-1, 20) }
