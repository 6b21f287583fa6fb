package defuse

import (
	"fmt"
	"sort"
	"strings"
)

// Snapshot is the one-shot reading plan decides on. Nil means unknown; the
// reason is in Errors.
type Snapshot struct {
	Port int `json:"port"`
	// ListenOverflowsPerSec is the namespace's TcpExt ListenOverflows rate.
	ListenOverflowsPerSec *float64 `json:"listen_overflows_per_sec"`
	// AcceptDepth is the port's accept queue now; AcceptLimit its limit,
	// estimated as min(Valkey tcp-backlog, somaxconn).
	AcceptDepth *int64 `json:"accept_depth"`
	AcceptLimit *int64 `json:"accept_limit"`
	Somaxconn   *int64 `json:"somaxconn"`
	SynBacklog  *int64 `json:"tcp_max_syn_backlog"`
	// ConntrackCount/Max are set when conntrack is active in the namespace.
	ConntrackCount *int64 `json:"conntrack_count"`
	ConntrackMax   *int64 `json:"conntrack_max"`
	// Valkey INFO and config.
	ConnectedClients    *int64            `json:"connected_clients"`
	MaxClients          *int64            `json:"maxclients"`
	RejectedConnections *int64            `json:"rejected_connections"`
	RejectedPerSec      *float64          `json:"rejected_per_sec"`
	AcceptCap           *int64            `json:"max_new_connections_per_cycle"`
	TCPBacklog          *int64            `json:"tcp_backlog"`
	Errors              map[string]string `json:"errors,omitempty"`
}

// Proposal is one suggested action.
type Proposal struct {
	Order   int    `json:"order"`
	Action  Action `json:"action"`
	Why     string `json:"why"`
	Effect  string `json:"effect"`
	Risk    string `json:"risk"`
	Command string `json:"command"`
}

// Plan is plan's whole answer.
type Plan struct {
	Verdict   string     `json:"verdict"` // "calm" or "storm"
	Snapshot  Snapshot   `json:"snapshot"`
	Proposals []Proposal `json:"proposals"`
}

// PlanTarget names the target in the proposed command lines.
type PlanTarget struct {
	Valkey string // address flag value without password ("" to omit)
	NetNS  string
	TTL    string // proposed TTL, e.g. "300s"
}

// Propose turns a snapshot into an ordered list of actions: the least
// risky that addresses what the snapshot shows first. It is pure.
func Propose(s Snapshot, t PlanTarget) Plan {
	if t.TTL == "" {
		t.TTL = "300s"
	}
	p := Plan{Verdict: "calm", Snapshot: s, Proposals: []Proposal{}}
	val := func(x *int64) int64 {
		if x == nil {
			return 0
		}
		return *x
	}
	fval := func(x *float64) float64 {
		if x == nil {
			return 0
		}
		return *x
	}
	overflowing := fval(s.ListenOverflowsPerSec) > 0
	queueFull := s.AcceptLimit != nil && s.AcceptDepth != nil && val(s.AcceptLimit) > 0 && val(s.AcceptDepth) >= val(s.AcceptLimit)
	nearMax := val(s.MaxClients) > 0 && float64(val(s.ConnectedClients)) >= 0.9*float64(val(s.MaxClients))
	rejecting := fval(s.RejectedPerSec) > 0
	ctFull := val(s.ConntrackMax) > 0 && float64(val(s.ConntrackCount)) >= 0.8*float64(val(s.ConntrackMax))
	if overflowing || queueFull || rejecting || ctFull {
		p.Verdict = "storm"
	}
	cmd := func(a Action, extra string) string {
		c := "stormguard defuse apply --action " + string(a)
		if t.Valkey != "" && !a.nft() {
			c += " --valkey " + t.Valkey
		}
		if t.NetNS != "" {
			c += " --netns " + t.NetNS
		}
		if a.nft() {
			c += fmt.Sprintf(" --port %d", s.Port)
		}
		if extra != "" {
			c += " " + extra
		}
		return c + " --ttl " + t.TTL
	}
	evidence := []string{}
	if overflowing {
		evidence = append(evidence, fmt.Sprintf("ListenOverflows %.0f/s", fval(s.ListenOverflowsPerSec)))
	}
	if queueFull {
		evidence = append(evidence, fmt.Sprintf("accept queue %d/%d", val(s.AcceptDepth), val(s.AcceptLimit)))
	}
	ev := strings.Join(evidence, ", ")
	type cand struct {
		rank int
		p    Proposal
	}
	var cs []cand
	if overflowing || queueFull {
		cs = append(cs, cand{10, Proposal{Action: RatelimitSYN,
			Why:     "the accept queue is overflowing (" + ev + "): new connections arrive faster than Valkey accepts them",
			Effect:  "each source may open at most 20 connections/s (burst 40); excess SYNs are dropped before conntrack and the clients retry later, so Valkey accepts the rest in order",
			Risk:    "low: established connections are untouched; clients behind one NAT address share a bucket and connect slower",
			Command: cmd(RatelimitSYN, "--rate 20/s --burst 40")}})
		if s.AcceptCap != nil && val(s.AcceptCap) < 100 {
			cs = append(cs, cand{20, Proposal{Action: AcceptCap,
				Why:     fmt.Sprintf("Valkey accepts at most %d connections per event-loop turn (max-new-connections-per-cycle) while its accept queue is full", val(s.AcceptCap)),
				Effect:  "Valkey drains the accept queue up to 10x faster per turn",
				Risk:    "medium: more main-thread time per turn goes to accepting, so established clients' latency rises; restored at revert/expiry",
				Command: cmd(AcceptCap, "--value 100")}})
		}
		limit := max(val(s.AcceptLimit), 100)
		cs = append(cs, cand{30, Proposal{Action: RatelimitGlobal,
			Why:     "if the storm comes from many sources (a large fleet), per-source limits do not bound the total",
			Effect:  fmt.Sprintf("at most %d new connections/s reach the port in total", limit),
			Risk:    "medium: well-behaved new clients compete with the storm for the same budget; established connections are untouched",
			Command: cmd(RatelimitGlobal, fmt.Sprintf("--rate %d/s", limit))}})
	}
	if ctFull {
		cs = append(cs, cand{40, Proposal{Action: Notrack,
			Why:     fmt.Sprintf("conntrack is %d/%d: when full, new SYNs are dropped before TCP sees them", val(s.ConntrackCount), val(s.ConntrackMax)),
			Effect:  "the port's packets bypass conntrack both ways, freeing table entries",
			Risk:    "high: breaks NAT and ct state rules for the port (apply refuses when it finds them)",
			Command: cmd(Notrack, "")}})
	}
	if s.AcceptLimit != nil && (overflowing || queueFull) && val(s.AcceptLimit) < 4096 {
		target := max(int64(4096), val(s.TCPBacklog))
		cs = append(cs, cand{50, Proposal{Action: Backlog,
			Why:     fmt.Sprintf("the accept queue limit is only %d", val(s.AcceptLimit)),
			Effect:  fmt.Sprintf("somaxconn %d lets a restarted Valkey listen with a larger backlog", target),
			Risk:    "low, but no effect until Valkey restarts (and tcp-backlog is raised in valkey.conf)",
			Command: cmd(Backlog, fmt.Sprintf("--somaxconn %d --syn-backlog %d", target, target))}})
	}
	if nearMax {
		cs = append(cs, cand{60, Proposal{Action: KillIdle,
			Why:     fmt.Sprintf("%d of maxclients %d connected; rejected_connections rising: %v", val(s.ConnectedClients), val(s.MaxClients), rejecting),
			Effect:  "frees slots held by clients idle for 5 minutes or more",
			Risk:    "high and irreversible: killed clients may reconnect at once and add to the storm",
			Command: cmd(KillIdle, "--min-idle 300s --yes-kill")}})
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].rank < cs[j].rank })
	for i, c := range cs {
		c.p.Order = i + 1
		p.Proposals = append(p.Proposals, c.p)
	}
	return p
}
