package backoff

import (
	"fmt"
	"math"
	"time"
)

// gRPC connection backoff defaults (grpc/grpc doc/connection-backoff.md).
const (
	GRPCInitialBackoff    = 1 * time.Second
	GRPCMultiplier        = 1.6
	GRPCJitter            = 0.2
	GRPCMaxBackoff        = 120 * time.Second
	GRPCMinConnectTimeout = 20 * time.Second
)

// DefaultGRPC returns gRPC's documented connection backoff: 1 s, ×1.6,
// ±20%, 120 s max, 20 s minimum connect timeout.
func DefaultGRPC() GRPC {
	return GRPC{Initial: GRPCInitialBackoff, Multiplier: GRPCMultiplier, Jitter: GRPCJitter,
		Max: GRPCMaxBackoff, MinConnectTimeout: GRPCMinConnectTimeout}
}

// GRPC is gRPC's connection backoff. Unlike the other policies its delays
// are measured from the start of the failed attempt (gRPC sleeps until a
// deadline set when the attempt began):
//
//   - n = 1: Initial, unjittered (the first deadline is start+Initial);
//   - n ≥ 2: min(Initial·Multiplier^(n−1), Max) × U(1−Jitter, 1+Jitter).
//
// gRPC resets the backoff only when the HTTP/2 SETTINGS frame arrives, i.e.
// after the handshake, not on TCP connect. Each attempt may run for
// ConnectTimeout(n) = max(delay, MinConnectTimeout).
type GRPC struct {
	// Initial is the first delay (1s).
	Initial time.Duration
	// Multiplier is the growth per failure (1.6).
	Multiplier float64
	// Jitter is the ± fraction applied from the second delay on (0.2 in
	// DefaultGRPC). Unlike the other fields it is taken literally: 0
	// means no jitter.
	Jitter float64
	// Max caps the delay before jitter (120s).
	Max time.Duration
	// MinConnectTimeout is the smallest time one attempt may take (20s).
	MinConnectTimeout time.Duration
}

func (p GRPC) normalized() GRPC {
	if p.Initial == 0 {
		p.Initial = GRPCInitialBackoff
	}
	if p.Multiplier == 0 {
		p.Multiplier = GRPCMultiplier
	}
	if p.Max == 0 {
		p.Max = GRPCMaxBackoff
	}
	if p.MinConnectTimeout == 0 {
		p.MinConnectTimeout = GRPCMinConnectTimeout
	}
	return p
}

// Validate implements Policy.
func (p GRPC) Validate() error {
	switch {
	case p.Initial < 0 || p.Max < 0 || p.MinConnectTimeout < 0:
		return fmt.Errorf("%w: grpc durations must not be negative", ErrInvalidConfig)
	// Written as !(valid) so that NaN, which fails every comparison, is
	// rejected (a NaN jitter made every delay the maximum Duration).
	case !(p.Multiplier == 0 || (p.Multiplier >= 1 && !math.IsInf(p.Multiplier, 1))):
		return fmt.Errorf("%w: grpc multiplier %g must be a finite number ≥ 1 (0: the default)", ErrInvalidConfig, p.Multiplier)
	case !(p.Jitter >= 0 && p.Jitter <= 1):
		return fmt.Errorf("%w: grpc jitter %g must be within 0..1", ErrInvalidConfig, p.Jitter)
	}
	q := p.normalized()
	if q.Initial > q.Max {
		return fmt.Errorf("%w: grpc initial backoff %s exceeds max %s", ErrInvalidConfig, q.Initial, q.Max)
	}
	return nil
}

// Delay implements Policy.
func (p GRPC) Delay(n int, prev time.Duration, r Rand) time.Duration {
	if n <= 0 {
		return 0
	}
	if p.Validate() != nil {
		return FailSafe.Delay(n, prev, r)
	}
	p = p.normalized()
	if n == 1 {
		return p.Initial
	}
	e := expo(p.Initial, p.Max, p.Multiplier, n-1)
	if p.Jitter == 0 {
		return floatToDur(e)
	}
	return floatToDur(e * uniform(orDefault(r), 1-p.Jitter, 1+p.Jitter))
}

// ConnectTimeout is how long attempt n+1 may take after n failures:
// max(Delay, MinConnectTimeout).
func (p GRPC) ConnectTimeout(delay time.Duration) time.Duration {
	return max(delay, p.normalized().MinConnectTimeout)
}
