package defuse

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Action names one kind of mitigation.
type Action string

// The actions, in the order plan considers them.
const (
	RatelimitSYN    Action = "ratelimit-syn"
	RatelimitGlobal Action = "ratelimit-global"
	Notrack         Action = "notrack"
	AcceptCap       Action = "accept-cap"
	Backlog         Action = "backlog"
	KillIdle        Action = "kill-idle"
)

// Actions lists every action.
var Actions = []Action{RatelimitSYN, RatelimitGlobal, Notrack, AcceptCap, Backlog, KillIdle}

// ErrBadInput is wrapped by every validation error (the CLI maps it to exit 2).
var ErrBadInput = errors.New("bad input")

// ParseAction validates an action name.
func ParseAction(s string) (Action, error) {
	for _, a := range Actions {
		if string(a) == s {
			return a, nil
		}
	}
	names := make([]string, len(Actions))
	for i, a := range Actions {
		names[i] = string(a)
	}
	return "", fmt.Errorf("%w: unknown action %q (want one of %s)", ErrBadInput, s, strings.Join(names, ", "))
}

// nft reports whether the action installs nftables rules.
func (a Action) nft() bool {
	_, ok := actuators[a].(nftActuator)
	return ok
}

// Rate is a packet rate as nftables' limit expression takes it.
type Rate struct {
	// N packets per Unit.
	N uint64
	// Unit is one of "second", "minute", "hour", "day".
	Unit string
}

// String renders the rate in nft syntax, e.g. "20/second".
func (r Rate) String() string {
	if r.N == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%s", r.N, r.Unit)
}

// PerSecond is the rate converted to packets per second.
func (r Rate) PerSecond() float64 { return float64(r.N) / unitSeconds[r.Unit] }

var unitSeconds = map[string]float64{"second": 1, "minute": 60, "hour": 3600, "day": 86400}

var unitAliases = map[string]string{
	"s": "second", "sec": "second", "second": "second",
	"m": "minute", "min": "minute", "minute": "minute",
	"h": "hour", "hour": "hour",
	"d": "day", "day": "day",
}

// ParseRate parses "N/UNIT": "20/s", "100/m", "5/second", "300/minute".
func ParseRate(s string) (Rate, error) {
	n, u, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("%w: rate %q: want N/s or N/m, e.g. 20/s", ErrBadInput, s)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(n), 10, 32)
	if err != nil || v == 0 {
		return Rate{}, fmt.Errorf("%w: rate %q: %q is not a positive whole number", ErrBadInput, s, n)
	}
	unit, ok := unitAliases[strings.ToLower(strings.TrimSpace(u))]
	if !ok {
		return Rate{}, fmt.Errorf("%w: rate %q: unit %q is not s, m, h or d", ErrBadInput, s, u)
	}
	return Rate{N: v, Unit: unit}, nil
}

// Params are an action's arguments. Zero values mean "not given"; Validate
// fills defaults and rejects what the action cannot use.
type Params struct {
	// Port is the Valkey listener's TCP port (required for the nftables
	// actions; the others default to the Valkey address's port).
	Port int `json:"port,omitempty"`
	// TTL bounds the mitigation's life. Required.
	TTL time.Duration `json:"-"`
	// Rate is the SYN rate for ratelimit-syn (per source) and
	// ratelimit-global (all sources).
	Rate Rate `json:"-"`
	// Burst is the limit's burst in packets (default: the rate's N, min 5).
	Burst uint32 `json:"burst,omitempty"`
	// RemoteOnly leaves packets arriving on the loopback interface out of
	// ratelimit-global: connections from this host itself (the watch
	// agent's own reconnect, local health checks) are never limited. Auto
	// mode's admission limit sets it, so the agent keeps reading INFO
	// while the port-wide bucket is full of the storm's SYNs.
	RemoteOnly bool `json:"remote_only,omitempty"`
	// Value is accept-cap's new max-new-connections-per-cycle (1-1000).
	Value int `json:"value,omitempty"`
	// Somaxconn and SynBacklog are backlog's new sysctl values (default
	// 4096 and 4096; a value below the current one is refused).
	Somaxconn  int `json:"somaxconn,omitempty"`
	SynBacklog int `json:"syn_backlog,omitempty"`
	// MinIdle is kill-idle's idle threshold (default 60s).
	MinIdle time.Duration `json:"-"`
	// NearFraction is how full (connected/maxclients) Valkey must be for
	// kill-idle to act (default 0.9).
	NearFraction float64 `json:"near_fraction,omitempty"`
	// ConfirmKill must be true for kill-idle (the CLI's --yes-kill).
	ConfirmKill bool `json:"-"`
	// DryRun computes and returns the changes without making them.
	DryRun bool `json:"-"`
}

// Validate checks p for action a and fills defaults.
func (p *Params) Validate(a Action) error {
	if p.TTL <= 0 {
		return fmt.Errorf("%w: --ttl is required (e.g. --ttl 60s): every mitigation must expire", ErrBadInput)
	}
	if p.Port < 0 || p.Port > 65535 {
		return fmt.Errorf("%w: port %d out of range 1-65535", ErrBadInput, p.Port)
	}
	act, err := actuatorOf(a)
	if err != nil {
		return err
	}
	return act.validate(p)
}
