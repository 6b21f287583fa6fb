package defuse

import (
	"context"
	"fmt"
	"strings"
)

// nftActuator is the three nftables actions: ratelimit-syn,
// ratelimit-global and notrack. Their rules look the port up in a set
// whose element times out at the TTL, so the kernel ends them by itself.
type nftActuator struct{ action Action }

func (n nftActuator) describe() string {
	switch n.action {
	case RatelimitSYN:
		return "nftables: per-source SYN rate limit on the port"
	case RatelimitGlobal:
		return "nftables: one SYN rate limit for the port, all sources together"
	}
	return "nftables: conntrack bypass for the port, both directions"
}

func (n nftActuator) kernelExpiry() bool { return true }

func (n nftActuator) validate(p *Params) error {
	if p.Port == 0 {
		return fmt.Errorf("%w: %s needs --port", ErrBadInput, n.action)
	}
	if n.action == Notrack {
		return nil
	}
	if p.Rate.N == 0 {
		return fmt.Errorf("%w: %s needs --rate (e.g. 20/s)", ErrBadInput, n.action)
	}
	if p.Burst == 0 {
		p.Burst = uint32(max(p.Rate.N, 5))
	}
	return nil
}

func (n nftActuator) apply(ctx context.Context, env actEnv, mt *Mitigation, p Params) error {
	spec, err := buildNFT(mt.ID, mt.Action, p)
	if err != nil {
		return err
	}
	mt.Changes = spec.render()
	if n.action != Notrack {
		mt.Rate, mt.Burst = p.Rate.String(), p.Burst
	}
	switch n.action {
	case RatelimitSYN:
		mt.Notes = append(mt.Notes,
			"only connection-opening SYNs are matched; established connections are never cut",
			"clients behind one NAT address share one bucket")
	case RatelimitGlobal:
		mt.Notes = append(mt.Notes,
			"one bucket for all sources: well-behaved clients compete with the storm for the rate",
			"only connection-opening SYNs are matched; established connections are never cut")
		if p.RemoteOnly {
			mt.Notes = append(mt.Notes, "connections from this host (loopback) are not limited")
		}
	case Notrack:
		mt.Notes = append(mt.Notes,
			"packets of the port are untracked both ways: rules matching ct state see 'untracked'",
			"when the TTL lapses, connections are picked up by conntrack again mid-stream")
	}
	if p.DryRun && n.action != Notrack {
		return nil // rendering needs no kernel
	}
	k, err := env.kernel(env.NetNS)
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	defer k.Close()
	if n.action == Notrack {
		why, err := notrackBlockers(ctx, k, env.NetNS, p.Port)
		if err != nil {
			return err
		}
		if len(why) > 0 {
			return fmt.Errorf("%w: notrack would break rules that depend on connection tracking: %s", ErrRefused, strings.Join(why, "; "))
		}
	}
	if p.DryRun {
		return nil
	}
	return k.install(spec)
}

func (n nftActuator) undo(ctx context.Context, env actEnv, mt Mitigation) error {
	k, err := env.kernel(mt.NetNS)
	if err != nil {
		return err
	}
	defer k.Close()
	return k.remove(map[string]bool{mt.ID: true})
}

func (n nftActuator) propose(f planFacts) (int, Proposal, bool) {
	s := f.s
	switch n.action {
	case RatelimitSYN:
		if !f.overflowing && !f.queueFull {
			return 0, Proposal{}, false
		}
		return 10, Proposal{Action: RatelimitSYN,
			Why:     "the accept queue is overflowing (" + f.evidence + "): new connections arrive faster than Valkey accepts them",
			Effect:  "each source may open at most 20 connections/s (burst 40); excess SYNs are dropped before conntrack and the clients retry later, so Valkey accepts the rest in order",
			Risk:    "low: established connections are untouched; clients behind one NAT address share a bucket and connect slower",
			Command: f.cmd(RatelimitSYN, "--rate 20/s --burst 40")}, true
	case RatelimitGlobal:
		if !f.overflowing && !f.queueFull {
			return 0, Proposal{}, false
		}
		limit := max(val(s.AcceptLimit), 100)
		return 30, Proposal{Action: RatelimitGlobal,
			Why:     "if the storm comes from many sources (a large fleet), per-source limits do not bound the total",
			Effect:  fmt.Sprintf("at most %d new connections/s reach the port in total", limit),
			Risk:    "medium: well-behaved new clients compete with the storm for the same budget; established connections are untouched",
			Command: f.cmd(RatelimitGlobal, fmt.Sprintf("--rate %d/s", limit))}, true
	}
	if !f.ctFull {
		return 0, Proposal{}, false
	}
	return 40, Proposal{Action: Notrack,
		Why:     fmt.Sprintf("conntrack is %d/%d: when full, new SYNs are dropped before TCP sees them", val(s.ConntrackCount), val(s.ConntrackMax)),
		Effect:  "the port's packets bypass conntrack both ways, freeing table entries",
		Risk:    "high: breaks NAT and ct state rules for the port (apply refuses when it finds them)",
		Command: f.cmd(Notrack, "")}, true
}

// notrackBlockers lists why untracking the port is unsafe or useless
// here, each reason quoting the rule or setting:
//   - nftables (and iptables-nft) rules that read conntrack state or do
//     NAT, in any table and chain that sees the port's packets;
//   - the same in legacy iptables (iptables-legacy-save), which nftables
//     cannot see;
//   - net.netfilter.nf_conntrack_tcp_loose = 0: conntrack would then not
//     pick up connections opened while notrack was armed, and they turn
//     INVALID when the TTL lapses;
//   - conntrack not active in the namespace (nothing to bypass).
func notrackBlockers(ctx context.Context, k kernel, ns string, port int) ([]string, error) {
	why, err := k.trackingDependents(port)
	if err != nil {
		return nil, err
	}
	why = append(why, legacyIptables(ctx, ns, port)...)
	if _, err := readSysctl(ns, "net.netfilter.nf_conntrack_count"); err != nil {
		return append(why, "conntrack is not active in this namespace: there is nothing to bypass, and a notrack rule would load it"), nil
	}
	if v, err := readSysctl(ns, sysctlTCPLoose); err == nil && v == "0" {
		why = append(why, sysctlTCPLoose+" = 0: connections opened while notrack is armed would turn INVALID when tracking resumes at the TTL")
	}
	return why, nil
}

// sysctlTCPLoose lets conntrack pick up TCP connections mid-stream.
const sysctlTCPLoose = "net.netfilter.nf_conntrack_tcp_loose"
