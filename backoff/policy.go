package backoff

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// ErrInvalidConfig is wrapped by every Validate error: a policy or budget
// whose fields cannot describe a schedule (GLIDE's InvalidClientConfig).
var ErrInvalidConfig = errors.New("backoff: invalid configuration")

// Rand is the source of randomness: Float64 returns a number in [0, 1).
// *math/rand/v2.Rand satisfies it.
type Rand interface {
	Float64() float64
}

// globalRand draws from math/rand/v2's process-wide source, which is safe
// for concurrent use. It holds no state of its own.
type globalRand struct{}

func (globalRand) Float64() float64 { return rand.Float64() }

// orDefault returns r, or the process-wide source when r is nil.
func orDefault(r Rand) Rand {
	if r == nil {
		return globalRand{}
	}
	return r
}

// uniform returns a value uniform in [lo, hi).
func uniform(r Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

// Policy maps the number of consecutive failures to the next delay.
//
// Delay(n, prev, r) is the time to wait after the n-th consecutive failure
// before attempt n+1; n = 0 (no failure yet: the first connect after a
// disconnect) must return 0. prev is the delay the policy returned for n−1
// (0 for n ≤ 1); only DecorrelatedJitter uses it. r is never nil when a
// Schedule calls Delay; direct callers may pass nil for the default source.
// Delay never returns a negative duration.
type Policy interface {
	Delay(n int, prev time.Duration, r Rand) time.Duration
	// Validate reports a configuration that Delay cannot honour, wrapping
	// ErrInvalidConfig.
	Validate() error
}

// toDuration converts milliseconds to a Duration, saturating instead of
// overflowing for huge exponents.
func msToDuration(ms float64) time.Duration {
	ns := ms * float64(time.Millisecond)
	if ns >= math.MaxInt64 || math.IsInf(ns, 1) || math.IsNaN(ns) {
		return time.Duration(math.MaxInt64)
	}
	if ns <= 0 {
		return 0
	}
	return time.Duration(ns)
}

func durToFloat(d time.Duration) float64 { return float64(d) }

func floatToDur(ns float64) time.Duration {
	if ns >= math.MaxInt64 || math.IsNaN(ns) {
		return time.Duration(math.MaxInt64)
	}
	if ns <= 0 {
		return 0
	}
	return time.Duration(ns)
}

// expo returns min(cap, base·mult^k) in nanoseconds, without overflow.
func expo(base, cap time.Duration, mult float64, k int) float64 {
	v := durToFloat(base) * math.Pow(mult, float64(k))
	if c := durToFloat(cap); v > c || math.IsInf(v, 1) || math.IsNaN(v) {
		return c
	}
	return v
}

// Immediate redials at once, forever: what valkey-go does for dials and
// GLIDE does for its first reconnect. It exists to be compared against.
type Immediate struct{}

// Delay always returns 0.
func (Immediate) Delay(int, time.Duration, Rand) time.Duration { return 0 }

// Validate always succeeds.
func (Immediate) Validate() error { return nil }

// Defaults for the Brooker jitter policies.
const (
	DefaultJitterBase = 100 * time.Millisecond
	DefaultJitterCap  = 10 * time.Second
)

// FailSafe is what a policy whose configuration is invalid returns from
// Delay when called anyway: full jitter with the default base and cap.
// NewSchedule and dialer.New reject invalid policies, so this is only
// reached by direct Delay calls; it exists so that a mistake slows a
// client down instead of making it redial in a tight loop.
var FailSafe Policy = FullJitter{Base: DefaultJitterBase, Cap: DefaultJitterCap}

// jitterBounds fills defaults and checks base ≤ cap.
func jitterBounds(name string, base, cap time.Duration) (time.Duration, time.Duration, error) {
	if base < 0 || cap < 0 {
		return 0, 0, fmt.Errorf("%w: %s base %s and cap %s must not be negative", ErrInvalidConfig, name, base, cap)
	}
	if base == 0 {
		base = DefaultJitterBase
	}
	if cap == 0 {
		cap = DefaultJitterCap
	}
	if base > cap {
		return 0, 0, fmt.Errorf("%w: %s base %s exceeds cap %s", ErrInvalidConfig, name, base, cap)
	}
	return base, cap, nil
}

// FullJitter is Brooker's "Full Jitter": after the n-th failure wait
// U(0, min(Cap, Base·2^(n−1))). It does the least total work of the
// Brooker schedules.
type FullJitter struct {
	// Base is the ceiling of the first delay (100ms).
	Base time.Duration
	// Cap bounds every delay (10s).
	Cap time.Duration
}

// Delay implements Policy.
func (p FullJitter) Delay(n int, _ time.Duration, r Rand) time.Duration {
	if n <= 0 {
		return 0
	}
	base, cap, err := jitterBounds("full-jitter", p.Base, p.Cap)
	if err != nil {
		base, cap = DefaultJitterBase, DefaultJitterCap
	}
	return floatToDur(uniform(orDefault(r), 0, expo(base, cap, 2, n-1)))
}

// Validate implements Policy.
func (p FullJitter) Validate() error {
	_, _, err := jitterBounds("full-jitter", p.Base, p.Cap)
	return err
}

// EqualJitter is Brooker's "Equal Jitter": after the n-th failure wait
// e/2 + U(0, e/2) with e = min(Cap, Base·2^(n−1)). It never waits less than
// half the exponential delay.
type EqualJitter struct {
	// Base is the ceiling of the first delay (100ms).
	Base time.Duration
	// Cap bounds every delay (10s).
	Cap time.Duration
}

// Delay implements Policy.
func (p EqualJitter) Delay(n int, prev time.Duration, r Rand) time.Duration {
	if n <= 0 {
		return 0
	}
	base, cap, err := jitterBounds("equal-jitter", p.Base, p.Cap)
	if err != nil {
		return FailSafe.Delay(n, prev, r)
	}
	e := expo(base, cap, 2, n-1)
	return floatToDur(e/2 + uniform(orDefault(r), 0, e/2))
}

// Validate implements Policy.
func (p EqualJitter) Validate() error {
	_, _, err := jitterBounds("equal-jitter", p.Base, p.Cap)
	return err
}

// DecorrelatedJitter is Brooker's "Decorrelated Jitter": after a failure
// wait min(Cap, U(Base, 3·prev)), where prev is the previous delay (Base
// for the first failure).
type DecorrelatedJitter struct {
	// Base is the smallest delay (100ms).
	Base time.Duration
	// Cap bounds every delay (10s).
	Cap time.Duration
}

// Delay implements Policy.
func (p DecorrelatedJitter) Delay(n int, prev time.Duration, r Rand) time.Duration {
	if n <= 0 {
		return 0
	}
	base, cap, err := jitterBounds("decorrelated", p.Base, p.Cap)
	if err != nil {
		return FailSafe.Delay(n, prev, r)
	}
	if prev < base {
		prev = base
	}
	v := uniform(orDefault(r), durToFloat(base), 3*durToFloat(prev))
	if c := durToFloat(cap); v > c {
		v = c
	}
	return floatToDur(v)
}

// Validate implements Policy.
func (p DecorrelatedJitter) Validate() error {
	_, _, err := jitterBounds("decorrelated", p.Base, p.Cap)
	return err
}
