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

// planFacts is what Propose derived from a snapshot; each actuator's
// propose decides from it whether it would help.
type planFacts struct {
	s           Snapshot
	overflowing bool   // ListenOverflows > 0
	queueFull   bool   // accept queue depth >= its limit
	nearMax     bool   // connected_clients >= 90% of maxclients
	rejecting   bool   // rejected_connections rising
	ctFull      bool   // conntrack >= 80% full
	evidence    string // the overflow evidence, for Why
	// cmd renders the exact apply command line for an action.
	cmd func(a Action, extra string) string
}

func val(x *int64) int64 {
	if x == nil {
		return 0
	}
	return *x
}

func fval(x *float64) float64 {
	if x == nil {
		return 0
	}
	return *x
}

// Propose turns a snapshot into an ordered list of actions: the least
// risky that addresses what the snapshot shows first. It is pure.
func Propose(s Snapshot, t PlanTarget) Plan {
	if t.TTL == "" {
		t.TTL = "300s"
	}
	p := Plan{Verdict: "calm", Snapshot: s, Proposals: []Proposal{}}
	f := planFacts{
		s:           s,
		overflowing: fval(s.ListenOverflowsPerSec) > 0,
		queueFull:   s.AcceptLimit != nil && s.AcceptDepth != nil && val(s.AcceptLimit) > 0 && val(s.AcceptDepth) >= val(s.AcceptLimit),
		nearMax:     val(s.MaxClients) > 0 && float64(val(s.ConnectedClients)) >= 0.9*float64(val(s.MaxClients)),
		rejecting:   fval(s.RejectedPerSec) > 0,
		ctFull:      val(s.ConntrackMax) > 0 && float64(val(s.ConntrackCount)) >= 0.8*float64(val(s.ConntrackMax)),
	}
	if f.overflowing || f.queueFull || f.rejecting || f.ctFull {
		p.Verdict = "storm"
	}
	f.cmd = func(a Action, extra string) string {
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
	var evidence []string
	if f.overflowing {
		evidence = append(evidence, fmt.Sprintf("ListenOverflows %.0f/s", fval(s.ListenOverflowsPerSec)))
	}
	if f.queueFull {
		evidence = append(evidence, fmt.Sprintf("accept queue %d/%d", val(s.AcceptDepth), val(s.AcceptLimit)))
	}
	f.evidence = strings.Join(evidence, ", ")
	type cand struct {
		rank int
		p    Proposal
	}
	var cs []cand
	for _, a := range Actions {
		if rank, pr, ok := actuators[a].propose(f); ok {
			cs = append(cs, cand{rank, pr})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].rank < cs[j].rank })
	for i, c := range cs {
		c.p.Order = i + 1
		p.Proposals = append(p.Proposals, c.p)
	}
	return p
}
