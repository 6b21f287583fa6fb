package simulate

import (
	"errors"
	"fmt"
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
	// Syncookies: with cookies (1, the default) a full SYN queue never
	// drops a SYN; without, SYNs beyond the listen backlog are dropped.
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
	// RTT is the network round trip (loopback: 50µs).
	RTT time.Duration `json:"rtt_ns"`
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
	// KillCost is the time CLIENT KILL takes per client it frees, as the
	// clients see it: the lab's kill closes the connections one after
	// another, each client notices its close when it arrives, and the
	// event loop accepts nothing until the command returns. The lab
	// measures it directly (the kill's failed commands spread over
	// ~0.55 s for 4,000 clients and ~1 s for 10,000 on a 2-core VM, about
	// 100 µs each); --calibrate takes it from the lab's timeline.
	KillCost time.Duration `json:"kill_cost_ns"`
	// KillBurst is how bursty the kill's closes are: the ratio of its
	// busiest 100 ms to its mean (1: even; the lab's were ~1.4–2.3,
	// Valkey and the clients descheduled in turns on a shared machine).
	// --calibrate reads it off the lab's timeline.
	KillBurst float64 `json:"kill_burst"`
	// DialSteal is the CPU one connect() of the client side takes from
	// Valkey while Valkey is busy (a kill, an event-loop turn): a load
	// generator on the same machine shares its cores (0: none, clients
	// on other hosts). --calibrate fits it with KillCost.
	DialSteal time.Duration `json:"dial_steal_ns"`
	// TLSCost is one TLS handshake.
	TLSCost time.Duration `json:"tls_cost_ns"`
	// CmdCost is one command of an established client: with N clients
	// each sending a command every Period the loop is N·CmdCost/Period
	// busy before it accepts anything.
	CmdCost time.Duration `json:"cmd_cost_ns"`
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
		RTT:                 50 * time.Microsecond,
		MaxNewConnsPerCycle: 10, MaxNewTLSConnsPerCycle: 1,
		CycleCost: 20 * time.Microsecond, ConnCost: 60 * time.Microsecond,
		TLSCost: 1800 * time.Microsecond, CmdCost: 2 * time.Microsecond,
		KillCost: 100 * time.Microsecond,
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
	fillI(&m.SynackRetries, d.SynackRetries)
	fillI(&m.MaxNewConnsPerCycle, d.MaxNewConnsPerCycle)
	fillI(&m.MaxNewTLSConnsPerCycle, d.MaxNewTLSConnsPerCycle)
	fillD(&m.RTT, d.RTT)
	fillD(&m.CycleCost, d.CycleCost)
	fillD(&m.ConnCost, d.ConnCost)
	fillD(&m.TLSCost, d.TLSCost)
	fillD(&m.KillCost, d.KillCost)
	return m
}

// Validate reports the first impossible value.
func (m Model) Validate() error {
	switch {
	case m.Somaxconn < 0 || m.TCPBacklog < 0:
		return fmt.Errorf("%w: somaxconn and tcp-backlog must not be negative", ErrConfig)
	case m.SynRetries < 0 || m.SynLinearTimeouts < 0 || m.SynackRetries < 0:
		return fmt.Errorf("%w: SYN and SYN-ACK retries must not be negative", ErrConfig)
	case m.MaxNewConnsPerCycle < 0 || m.MaxNewConnsPerCycle > 1000 || m.MaxNewTLSConnsPerCycle < 0 || m.MaxNewTLSConnsPerCycle > 1000:
		return fmt.Errorf("%w: max-new-(tls-)connections-per-cycle must be within 1..1000", ErrConfig)
	case m.RTT < 0 || m.CycleCost < 0 || m.ConnCost < 0 || m.TLSCost < 0 || m.CmdCost < 0 || m.KillCost < 0 || m.DialSteal < 0:
		return fmt.Errorf("%w: RTT and costs must not be negative", ErrConfig)
	case m.KillBurst < 0 || m.KillBurst > 100:
		return fmt.Errorf("%w: kill burst must be within 0..100", ErrConfig)
	case m.ClientDialRate < 0:
		return fmt.Errorf("%w: client dial rate must not be negative", ErrConfig)
	}
	return nil
}

// acceptLimit is the accept queue's capacity.
func (m Model) acceptLimit() int { return min(m.Somaxconn, m.TCPBacklog) }

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
