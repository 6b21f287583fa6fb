package defuse

import (
	"context"
	"fmt"

	"github.com/stormguard/stormguard/internal/addr"
)

// actuator is everything about one action: how it validates its
// parameters, changes the system, undoes the change, what ends it at the
// TTL, and what plan says about it. The Manager only keeps state (the
// state file, ids, expiry) and calls into the actuator of each action.
type actuator interface {
	// describe is one line: what the action changes.
	describe() string
	// validate fills p's defaults and rejects what the action cannot use.
	validate(p *Params) error
	// apply fills mt (Changes, Notes, Restore) and, unless p.DryRun,
	// makes the change in env.
	apply(ctx context.Context, env actEnv, mt *Mitigation, p Params) error
	// undo reverses mt. env.Valkey carries the password to use.
	undo(ctx context.Context, env actEnv, mt Mitigation) error
	// kernelExpiry reports whether the kernel ends the action at its TTL
	// by itself.
	kernelExpiry() bool
	// propose returns plan's proposal for the facts, with its rank (lower
	// is proposed first), or ok false when the action would not help.
	propose(f planFacts) (rank int, p Proposal, ok bool)
}

// actEnv is what an actuator acts on.
type actEnv struct {
	// NetNS is the target's network namespace path ("" = ours).
	NetNS string
	// Valkey is the target's address, with credentials.
	Valkey addr.Addr
	// kernel opens nftables in a namespace.
	kernel func(ns string) (kernel, error)
	// warn reports something undo chose not to do.
	warn func(msg string, args ...any)
}

// actuators is the one table of actions. Adding an action means adding
// its constant, one entry here and one file with its actuator.
var actuators = map[Action]actuator{
	RatelimitSYN:    nftActuator{action: RatelimitSYN},
	RatelimitGlobal: nftActuator{action: RatelimitGlobal},
	Notrack:         nftActuator{action: Notrack},
	AcceptCap:       acceptCapActuator{},
	Backlog:         backlogActuator{},
	KillIdle:        killIdleActuator{},
}

func actuatorOf(a Action) (actuator, error) {
	act, ok := actuators[a]
	if !ok {
		return nil, fmt.Errorf("%w: unknown action %q", ErrBadInput, a)
	}
	return act, nil
}

// Describe is one line saying what the action changes ("" for an unknown
// action).
func (a Action) Describe() string {
	if act, ok := actuators[a]; ok {
		return act.describe()
	}
	return ""
}
