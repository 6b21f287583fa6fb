package defuse

import (
	"context"
	"fmt"
	"strconv"
)

const configAcceptCap = "max-new-connections-per-cycle"

// acceptCapActuator sets Valkey's max-new-connections-per-cycle.
type acceptCapActuator struct{}

func (acceptCapActuator) describe() string {
	return "CONFIG SET " + configAcceptCap + " N"
}

func (acceptCapActuator) kernelExpiry() bool { return false }

func (acceptCapActuator) validate(p *Params) error {
	if p.Value < 1 || p.Value > 1000 {
		return fmt.Errorf("%w: accept-cap needs --value between 1 and 1000 (max-new-connections-per-cycle), got %d", ErrBadInput, p.Value)
	}
	return nil
}

func (acceptCapActuator) apply(ctx context.Context, env actEnv, mt *Mitigation, p Params) error {
	mt.Valkey = env.Valkey.HostPort()
	v, err := dialValkey(ctx, env.Valkey, env.NetNS)
	if err != nil {
		return err
	}
	defer v.Close()
	orig, ok, err := v.ConfigGet(ctx, configAcceptCap)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: this server has no %s (Valkey >= 8.0 has it; 7.2 hard-codes 1000 accepts per call)", ErrRefused, configAcceptCap)
	}
	val := strconv.Itoa(p.Value)
	mt.Changes = append(mt.Changes, fmt.Sprintf("CONFIG SET %s %s   # was %s", configAcceptCap, val, orig))
	mt.Restore = &Restore{Config: map[string]string{configAcceptCap: orig}, AppliedConfig: map[string]string{configAcceptCap: val},
		ValkeyUser: env.Valkey.User, ValkeyTLS: env.Valkey.TLS}
	if n, _ := strconv.Atoi(orig); p.Value < n {
		mt.Notes = append(mt.Notes, "lowering the cap protects established clients' latency but moves the queue into the kernel's accept queue")
	} else {
		mt.Notes = append(mt.Notes, "raising the cap drains the accept queue faster at the cost of main-thread time per event-loop turn")
	}
	if p.DryRun {
		return nil
	}
	return v.ConfigSet(ctx, configAcceptCap, val)
}

func (acceptCapActuator) undo(ctx context.Context, env actEnv, mt Mitigation) error {
	if mt.Restore == nil || len(mt.Restore.Config) == 0 {
		return nil
	}
	v, err := dialValkey(ctx, env.Valkey, mt.NetNS)
	if err != nil {
		return err
	}
	defer v.Close()
	for _, k := range keys(mt.Restore.Config) {
		if set, ok := mt.Restore.AppliedConfig[k]; ok {
			cur, found, err := v.ConfigGet(ctx, k)
			if err != nil {
				return err
			}
			if !found || cur != set {
				env.warn("defuse: left Valkey config as it is: it changed since stormguard set it (a restart or an operator)",
					"id", mt.ID, "param", k, "set", set, "now", cur)
				continue
			}
		}
		if err := v.ConfigSet(ctx, k, mt.Restore.Config[k]); err != nil {
			return err
		}
	}
	return nil
}

func (acceptCapActuator) propose(f planFacts) (int, Proposal, bool) {
	s := f.s
	if !(f.overflowing || f.queueFull) || s.AcceptCap == nil || val(s.AcceptCap) >= 100 {
		return 0, Proposal{}, false
	}
	return 20, Proposal{Action: AcceptCap,
		Why:     fmt.Sprintf("Valkey accepts at most %d connections per event-loop turn (max-new-connections-per-cycle) while its accept queue is full", val(s.AcceptCap)),
		Effect:  "Valkey drains the accept queue up to 10x faster per turn",
		Risk:    "medium: more main-thread time per turn goes to accepting, so established clients' latency rises; restored at revert/expiry",
		Command: f.cmd(AcceptCap, "--value 100")}, true
}
