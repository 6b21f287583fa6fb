package backoff

import (
	"fmt"
	"math"
	"time"
)

// GLIDE defaults (glide-core retry_strategies.rs).
const (
	GLIDEDefaultRetries       = 5
	GLIDEDefaultFactor        = 100
	GLIDEDefaultExponentBase  = 2
	GLIDEDefaultJitterPercent = 20
	// GLIDEMaxJitterPercent is the largest jitter GLIDE accepts
	// (MAX_JITTER_PERCENT); more is InvalidClientConfig.
	GLIDEMaxJitterPercent = 100
)

// GLIDE is valkey-glide's reconnect strategy with the semantics of its code
// (glide-core/redis-rs/redis/src/retry_strategies.rs), which differ from its
// docs (the docs say rand(0 … factor·base^N)):
//
//   - n = 0: 0, the first reconnect is immediate (connect, then sleep only
//     after a failure);
//   - n = 1..Retries: Factor·ExponentBase^n ms × U(1−j, 1+j),
//     j = JitterPercent/100 (defaults: 200, 400, 800, 1600, 3200 ms ±20%);
//   - n > Retries: Factor·ExponentBase^Retries ms, unjittered, forever
//     (3.2 s by default);
//   - Retries = 0: no jittered steps, Factor·ExponentBase^1 ms unjittered
//     forever.
//
// Zero Factor or ExponentBase mean the default, as in GLIDE. Because 0 is a
// meaningful value for Retries and JitterPercent, GLIDE's defaults for them
// are applied only by [DefaultGLIDE]; a zero GLIDE{} value means 0 retries
// and no jitter.
type GLIDE struct {
	// Retries is the number of jittered, growing steps before the
	// constant tail (GLIDE number_of_retries; default 5 via DefaultGLIDE).
	Retries int
	// Factor multiplies every step, in milliseconds (100; 0 = default).
	Factor int
	// ExponentBase is the growth base (2; 0 = default).
	ExponentBase int
	// JitterPercent is the ± jitter of the growing steps in percent
	// (20 via DefaultGLIDE); 0..100, where 100 means U(0, 2)×.
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

// Validate implements Policy. Jitter above 100% is GLIDE's
// InvalidClientConfig; negative values cannot be expressed in GLIDE's
// unsigned fields.
func (p GLIDE) Validate() error {
	switch {
	case p.JitterPercent > GLIDEMaxJitterPercent:
		return fmt.Errorf("%w: glide jitter_percent %d exceeds %d", ErrInvalidConfig, p.JitterPercent, GLIDEMaxJitterPercent)
	case p.JitterPercent < 0, p.Retries < 0, p.Factor < 0, p.ExponentBase < 0:
		return fmt.Errorf("%w: glide retries, factor, exponent base and jitter percent must not be negative", ErrInvalidConfig)
	}
	return nil
}

// stepMS is Factor·ExponentBase^k in milliseconds.
func (p GLIDE) stepMS(k int) float64 {
	return float64(p.Factor) * math.Pow(float64(p.ExponentBase), float64(k))
}

// Delay implements Policy. An invalid configuration yields 0; call
// Validate first.
func (p GLIDE) Delay(n int, _ time.Duration, r Rand) time.Duration {
	if n <= 0 || p.Validate() != nil {
		return 0
	}
	p = p.normalized()
	if p.Retries == 0 {
		return msToDuration(p.stepMS(1))
	}
	if n > p.Retries {
		return msToDuration(p.stepMS(p.Retries))
	}
	j := float64(p.JitterPercent) / 100
	return msToDuration(p.stepMS(n) * uniform(orDefault(r), 1-j, 1+j))
}
