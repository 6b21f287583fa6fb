package defuse

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// killIdleActuator disconnects idle clients near maxclients. It cannot be
// undone and is never recorded as active.
type killIdleActuator struct{}

func (killIdleActuator) describe() string {
	return "CLIENT KILL ID of idle normal clients (irreversible)"
}

func (killIdleActuator) kernelExpiry() bool { return false }

func (killIdleActuator) validate(p *Params) error {
	if !p.ConfirmKill {
		return fmt.Errorf("%w: kill-idle disconnects clients and cannot be reverted; add --yes-kill to confirm", ErrBadInput)
	}
	if p.MinIdle == 0 {
		p.MinIdle = 60 * time.Second
	}
	if p.MinIdle < time.Second {
		return fmt.Errorf("%w: --min-idle must be at least 1s", ErrBadInput)
	}
	if p.NearFraction == 0 {
		p.NearFraction = 0.9
	}
	if p.NearFraction < 0 || p.NearFraction > 1 {
		return fmt.Errorf("%w: --near must be between 0 and 1", ErrBadInput)
	}
	return nil
}

func (killIdleActuator) apply(ctx context.Context, env actEnv, mt *Mitigation, p Params) error {
	mt.Valkey = env.Valkey.HostPort()
	mt.Notes = append(mt.Notes,
		"cannot be reverted: killed clients are gone (well-behaved ones reconnect, which is itself new connections)",
		fmt.Sprintf("only normal clients idle for at least %s with no blocking, pub/sub or MULTI state are killed", p.MinIdle))
	v, err := dialValkey(ctx, env.Valkey, env.NetNS)
	if err != nil {
		return err
	}
	defer v.Close()
	info, err := v.Info(ctx, "clients")
	if err != nil {
		return err
	}
	connected, ok := atoi(info, "connected_clients")
	if !ok {
		return errors.New("INFO clients has no connected_clients")
	}
	mc, ok := atoi(info, "maxclients")
	if !ok {
		s, found, err := v.ConfigGet(ctx, "maxclients")
		if err != nil || !found {
			return fmt.Errorf("read maxclients: %w", err)
		}
		mc, _ = strconv.ParseInt(s, 10, 64)
	}
	if mc <= 0 || float64(connected) < p.NearFraction*float64(mc) {
		return fmt.Errorf("%w: %d of maxclients %d connected, below %.0f%%: killing clients would not help", ErrRefused, connected, mc, p.NearFraction*100)
	}
	self, err := v.ClientID(ctx)
	if err != nil {
		return err
	}
	clients, err := v.ClientList(ctx)
	if err != nil {
		return err
	}
	victims := idleVictims(clients, self, p.MinIdle)
	if len(victims) == 0 {
		return fmt.Errorf("%w: no normal client idle for %s or more", ErrRefused, p.MinIdle)
	}
	for _, c := range victims {
		mt.Changes = append(mt.Changes, fmt.Sprintf("CLIENT KILL ID %s   # %s idle %ss", c["id"], c["addr"], c["idle"]))
	}
	if p.DryRun {
		return nil
	}
	for _, c := range victims {
		if err := v.ClientKill(ctx, c["id"]); err != nil {
			return err
		}
	}
	return nil
}

// undo has nothing to do: killed clients cannot be restored.
func (killIdleActuator) undo(context.Context, actEnv, Mitigation) error { return nil }

func (killIdleActuator) propose(f planFacts) (int, Proposal, bool) {
	s := f.s
	if !f.nearMax {
		return 0, Proposal{}, false
	}
	return 60, Proposal{Action: KillIdle,
		Why:     fmt.Sprintf("%d of maxclients %d connected; rejected_connections rising: %v", val(s.ConnectedClients), val(s.MaxClients), f.rejecting),
		Effect:  "frees slots held by clients idle for 5 minutes or more",
		Risk:    "high and irreversible: killed clients may reconnect at once and add to the storm",
		Command: f.cmd(KillIdle, "--min-idle 300s --yes-kill")}, true
}

// idleVictims picks clients kill-idle may disconnect: idle at least minIdle,
// not ourselves, not blocked, subscribed, in MULTI, or a replica/master.
func idleVictims(clients []map[string]string, self string, minIdle time.Duration) []map[string]string {
	var out []map[string]string
	for _, c := range clients {
		if c["id"] == "" || c["id"] == self {
			continue
		}
		idle, err := strconv.ParseInt(c["idle"], 10, 64)
		if err != nil || time.Duration(idle)*time.Second < minIdle {
			continue
		}
		if strings.ContainsAny(c["flags"], "bPxSMut") {
			continue
		}
		if v := c["sub"] + c["psub"] + c["ssub"]; strings.Trim(v, "0") != "" {
			continue
		}
		if m := c["multi"]; m != "" && m != "-1" {
			continue
		}
		out = append(out, c)
	}
	return out
}
