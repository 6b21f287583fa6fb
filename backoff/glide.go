package backoff

import (
	"fmt"
	"math"
	"time"
)

// GLIDE defaults (valkey-glide v2.5.1,
// glide-core/redis-rs/redis/src/retry_strategies.rs lines 17-20).
const (
	GLIDEDefaultRetries       = 5
	GLIDEDefaultFactor        = 100
	GLIDEDefaultExponentBase  = 2
	GLIDEDefaultJitterPercent = 20
	// GLIDEMaxJitterPercent is the largest jitter this package accepts.
	// Released GLIDE (v2.5.1) does not check it: a larger percentage
	// makes the low end of U(1−j, 1+j) negative. Validate rejects it.
	GLIDEMaxJitterPercent = 100
)

// GLIDE is valkey-glide's reconnect strategy with the semantics of its code
// in the released tag v2.5.1 (glide-core/redis-rs/redis/src/retry_strategies.rs,
// get_infinite_backoff_dur_iterator, lines 73-92, driven by
// glide-core/src/client/reconnecting_connection.rs lines 459-527), which
// differ from its docs (the docs say rand(0 … factor·base^N)):
//
//   - n = 0: 0, the first reconnect is immediate (connect, then sleep only
//     after a failure);
//   - n = 1..Retries: Factor·ExponentBase^n ms × U(1−j, 1+j),
//     j = JitterPercent/100 (defaults: 200, 400, 800, 1600, 3200 ms ±20%);
//   - n > Retries: Factor·ExponentBase^Retries ms, unjittered, forever
//     (3.2 s by default).
//
// Zero Factor or ExponentBase mean the default, as in GLIDE. Because 0 is a
// meaningful value for JitterPercent (no jitter), GLIDE's defaults are
// applied only by [DefaultGLIDE]. Retries must be at least 1: released
// GLIDE computes number_of_retries − 1 in unsigned arithmetic, so 0
// underflows there; Validate rejects it instead of guessing a schedule.
type GLIDE struct {
	// Retries is the number of jittered, growing steps before the
	// constant tail (GLIDE number_of_retries; default 5 via DefaultGLIDE);
	// at least 1.
	Retries int
	// Factor multiplies every step, in milliseconds (100; 0 = default).
	Factor int
	// ExponentBase is the growth base (2; 0 = default).
	ExponentBase int
	// JitterPercent is the ± jitter of the growing steps in percent
	// (20 via DefaultGLIDE); 0..100: 0 means no jitter, 100 U(0, 2)×.
	JitterPercent int
}

// DefaultGLIDE returns GLIDE's default strategy: (5, 100, 2, 20%).
func DefaultGLIDE() GLIDE {
	return GLIDE{Retries: GLIDEDefaultRetries, Factor: GLIDEDefaultFactor,
		ExponentBase: GLIDEDefaultExponentBase, JitterPercent: GLIDEDefaultJitterPercent}
}

func (p GLIDE) normalized() GLIDE {
	if p.Factor == 0 {
		p.Factor = GLIDEDefaultFactor
	}
	if p.ExponentBase == 0 {
		p.ExponentBase = GLIDEDefaultExponentBase
	}
	return p
}

// Validate implements Policy. Retries 0 (an underflow in released GLIDE)
// and jitter above 100% (negative delays) are rejected; negative values
// cannot be expressed in GLIDE's unsigned fields.
func (p GLIDE) Validate() error {
	switch {
	case p.JitterPercent > GLIDEMaxJitterPercent:
		return fmt.Errorf("%w: glide jitter_percent %d exceeds %d", ErrInvalidConfig, p.JitterPercent, GLIDEMaxJitterPercent)
	case p.JitterPercent < 0, p.Retries < 0, p.Factor < 0, p.ExponentBase < 0:
		return fmt.Errorf("%w: glide retries, factor, exponent base and jitter percent must not be negative", ErrInvalidConfig)
	case p.Retries == 0:
		return fmt.Errorf("%w: glide number_of_retries must be at least 1 (released GLIDE underflows on 0)", ErrInvalidConfig)
	}
	return nil
}

// stepMS is Factor·ExponentBase^k in milliseconds.
func (p GLIDE) stepMS(k int) float64 {
	return float64(p.Factor) * math.Pow(float64(p.ExponentBase), float64(k))
}

// Delay implements Policy. An invalid configuration never yields 0: it
// falls back to [FailSafe] (call Validate first; NewSchedule does).
func (p GLIDE) Delay(n int, prev time.Duration, r Rand) time.Duration {
	if n <= 0 {
		return 0
	}
	if p.Validate() != nil {
		return FailSafe.Delay(n, prev, r)
	}
	p = p.normalized()
	if n > p.Retries {
		return msToDuration(p.stepMS(p.Retries))
	}
	j := float64(p.JitterPercent) / 100
	if j == 0 {
		return msToDuration(p.stepMS(n))
	}
	return msToDuration(p.stepMS(n) * uniform(orDefault(r), 1-j, 1+j))
}
