package backoff

import (
	"fmt"
	"time"
)

// Fixed waits the same time, Every, after every failure (100ms when
// zero): the simplest schedule, and one that keeps a fleet in lock-step.
type Fixed struct {
	Every time.Duration
}

// DefaultFixedDelay is Fixed's delay when its Delay is zero.
const DefaultFixedDelay = 100 * time.Millisecond

// Delay implements Policy. A negative Every (invalid: NewSchedule
// rejects it) falls back to [FailSafe] instead of a negative delay.
func (p Fixed) Delay(n int, prev time.Duration, r Rand) time.Duration {
	if n <= 0 {
		return 0
	}
	if p.Every < 0 {
		return FailSafe.Delay(n, prev, r)
	}
	if p.Every == 0 {
		return DefaultFixedDelay
	}
	return p.Every
}

// Validate implements Policy.
func (p Fixed) Validate() error {
	if p.Every < 0 {
		return fmt.Errorf("%w: fixed delay %s must not be negative", ErrInvalidConfig, p.Every)
	}
	return nil
}

// Params are the settings of the policies ByName builds. Each policy reads
// only its own fields.
type Params struct {
	// Delay is Fixed's delay.
	Delay time.Duration
	// GLIDE is used as given: DefaultGLIDE() for GLIDE's defaults.
	GLIDE GLIDE
	// Base and Cap are the jitter policies' base and cap, and GRPC's
	// initial and maximum backoff.
	Base, Cap time.Duration
}

// names lists the policies ByName knows, in a stable order.
var names = []string{"immediate", "fixed", "glide", "full-jitter", "equal-jitter", "decorrelated", "grpc"}

// Names returns the policy names ByName accepts.
func Names() []string { return append([]string(nil), names...) }

// ByName builds and validates the policy called name from p: the one
// mapping from a strategy name (as the CLI, the lab and the simulator
// spell it) to a Policy.
func ByName(name string, p Params) (Policy, error) {
	var pol Policy
	switch name {
	case "immediate":
		pol = Immediate{}
	case "fixed":
		pol = Fixed{Every: p.Delay}
	case "glide":
		pol = p.GLIDE
	case "full-jitter":
		pol = FullJitter{Base: p.Base, Cap: p.Cap}
	case "equal-jitter":
		pol = EqualJitter{Base: p.Base, Cap: p.Cap}
	case "decorrelated":
		pol = DecorrelatedJitter{Base: p.Base, Cap: p.Cap}
	case "grpc":
		g := DefaultGRPC()
		if p.Base != 0 {
			g.Initial = p.Base
		}
		if p.Cap != 0 {
			g.Max = p.Cap
		}
		pol = g
	default:
		return nil, fmt.Errorf("%w: unknown policy %q", ErrInvalidConfig, name)
	}
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	return pol, nil
}
