package backoff

import "time"

// Schedule is the stateful side of a Policy: it counts consecutive failures
// and remembers the previous delay. It is not safe for concurrent use; one
// Schedule belongs to one connection or one target.
type Schedule struct {
	policy   Policy
	rand     Rand
	failures int
	prev     time.Duration
}

// NewSchedule returns a schedule for p drawing from r (nil = the
// process-wide source). It returns p's Validate error, if any.
func NewSchedule(p Policy, r Rand) (*Schedule, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Schedule{policy: p, rand: orDefault(r)}, nil
}

// Failure records one failed attempt and returns how long to wait before
// the next one.
func (s *Schedule) Failure() time.Duration {
	s.failures++
	d := s.policy.Delay(s.failures, s.prev, s.rand)
	s.prev = d
	return d
}

// Failures is the number of consecutive failures since the last Reset.
func (s *Schedule) Failures() int { return s.failures }

// Reset forgets the failures. Call it only after the connection proved
// healthy, not when TCP connect succeeds.
func (s *Schedule) Reset() {
	s.failures = 0
	s.prev = 0
}
