package defuse

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// Sysctls backlog raises. Both are per network namespace.
const (
	sysctlSomaxconn  = "net.core.somaxconn"
	sysctlSynBacklog = "net.ipv4.tcp_max_syn_backlog"
)

// backlogActuator raises the listen backlog sysctls of the namespace.
type backlogActuator struct{}

func (backlogActuator) describe() string {
	return "sysctls net.core.somaxconn and net.ipv4.tcp_max_syn_backlog in the target namespace"
}

func (backlogActuator) kernelExpiry() bool { return false }

func (backlogActuator) validate(p *Params) error {
	if p.Somaxconn == 0 {
		p.Somaxconn = 4096
	}
	if p.SynBacklog == 0 {
		p.SynBacklog = 4096
	}
	if p.Somaxconn < 1 || p.SynBacklog < 1 {
		return fmt.Errorf("%w: backlog values must be positive", ErrBadInput)
	}
	return nil
}

func (backlogActuator) apply(ctx context.Context, env actEnv, mt *Mitigation, p Params) error {
	want := map[string]int{sysctlSomaxconn: p.Somaxconn, sysctlSynBacklog: p.SynBacklog}
	restore := map[string]string{}
	for _, k := range keys(want) {
		cur, err := readSysctl(env.NetNS, k)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(cur)
		if err != nil {
			return fmt.Errorf("sysctl %s: unexpected value %q", k, cur)
		}
		if want[k] < n {
			return fmt.Errorf("%w: %s is %d; backlog only raises it (asked %d)", ErrRefused, k, n, want[k])
		}
		if want[k] == n {
			continue
		}
		restore[k] = cur
		mt.Changes = append(mt.Changes, fmt.Sprintf("sysctl -w %s=%d   # was %s", k, want[k], cur))
	}
	if len(restore) == 0 {
		return fmt.Errorf("%w: %s and %s already have the asked values", ErrRefused, sysctlSomaxconn, sysctlSynBacklog)
	}
	applied := map[string]string{}
	for k := range restore {
		applied[k] = strconv.Itoa(want[k])
	}
	mt.Restore = &Restore{Sysctls: restore, AppliedSysctls: applied}
	mt.Notes = append(mt.Notes,
		"Valkey's accept queue is min(tcp-backlog, somaxconn) taken when it calls listen(): it grows only after a Valkey restart, and tcp-backlog (valkey.conf, immutable at runtime) must be raised too",
		"tcp_max_syn_backlog matters only with tcp_syncookies=0; with cookies the listen backlog bounds the SYN queue")
	if v, err := dialValkey(ctx, env.Valkey, env.NetNS); err == nil {
		if tb, ok, err := v.ConfigGet(ctx, "tcp-backlog"); err == nil && ok {
			mt.Notes = append(mt.Notes, "Valkey tcp-backlog is "+tb)
		}
		v.Close()
	}
	if p.DryRun {
		return nil
	}
	for _, k := range keys(restore) {
		if err := writeSysctl(env.NetNS, k, strconv.Itoa(want[k])); err != nil {
			// Put back what we already changed.
			for _, r := range keys(restore) {
				_ = writeSysctl(env.NetNS, r, restore[r])
			}
			return err
		}
	}
	return nil
}

func (backlogActuator) undo(ctx context.Context, env actEnv, mt Mitigation) error {
	if mt.Restore == nil {
		return nil
	}
	var errs []error
	for _, k := range keys(mt.Restore.Sysctls) {
		if set, ok := mt.Restore.AppliedSysctls[k]; ok {
			cur, err := readSysctl(mt.NetNS, k)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if cur != set {
				env.warn("defuse: left sysctl as it is: it changed since stormguard set it", "id", mt.ID, "sysctl", k, "set", set, "now", cur)
				continue
			}
		}
		errs = append(errs, writeSysctl(mt.NetNS, k, mt.Restore.Sysctls[k]))
	}
	return errors.Join(errs...)
}

func (backlogActuator) propose(f planFacts) (int, Proposal, bool) {
	s := f.s
	if s.AcceptLimit == nil || !(f.overflowing || f.queueFull) || val(s.AcceptLimit) >= 4096 {
		return 0, Proposal{}, false
	}
	target := max(int64(4096), val(s.TCPBacklog))
	return 50, Proposal{Action: Backlog,
		Why:     fmt.Sprintf("the accept queue limit is only %d", val(s.AcceptLimit)),
		Effect:  fmt.Sprintf("somaxconn %d lets a restarted Valkey listen with a larger backlog", target),
		Risk:    "low, but no effect until Valkey restarts (and tcp-backlog is raised in valkey.conf)",
		Command: f.cmd(Backlog, fmt.Sprintf("--somaxconn %d --syn-backlog %d", target, target))}, true
}
