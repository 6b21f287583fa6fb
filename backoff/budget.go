package backoff

import (
	"fmt"
	"sync"
	"time"
)

// Budget defaults: Finagle's RetryBudget (and tower's Budget).
const (
	DefaultBudgetTTL              = 10 * time.Second
	DefaultBudgetMinRetriesPerSec = 10
	DefaultBudgetPercent          = 0.2
)

// budgetSlices is how many time slices the TTL window is cut into, as in
// Finagle's WindowedAdder: a deposit expires between TTL·(1−1/slices) and
// TTL after it was made.
const budgetSlices = 10

// scale turns fractional retry costs into integers (Finagle's ScaleFactor).
const scale = 1000

// BudgetOptions configure a Budget. Zero values mean the defaults.
type BudgetOptions struct {
	// Percent is the fraction of requests that may be retried on top of
	// the floor, e.g. 0.2 for 20% (0.2). Use NoPercent for 0.
	Percent float64
	// NoPercent makes Percent 0: only the MinRetriesPerSec floor applies.
	NoPercent bool
	// MinRetriesPerSec is the floor of retries always allowed per second,
	// for clients that have just started or see little traffic (10). Use
	// -1 for none.
	MinRetriesPerSec int
	// TTL is how long a deposit counts (10s).
	TTL time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Budget is a retry budget with Finagle's semantics: over any TTL window,
// retries ≤ Percent·requests + MinRetriesPerSec·TTL. It is safe for
// concurrent use.
//
// Every request calls Deposit; every retry first calls TryWithdraw and
// skips the retry when it returns false. Withdrawals, like deposits, age out
// after TTL, so the floor refills at MinRetriesPerSec.
type Budget struct {
	mu       sync.Mutex
	now      func() time.Time
	deposit  int64 // tokens per request
	withdraw int64 // tokens per retry
	reserve  int64 // tokens always present (the floor)
	slice    time.Duration
	slots    [budgetSlices]int64
	head     int       // slot holding the current slice
	headAt   time.Time // start of the current slice
}

// NewBudget returns a budget, or an error wrapping ErrInvalidConfig.
func NewBudget(o BudgetOptions) (*Budget, error) {
	if o.TTL < 0 {
		return nil, fmt.Errorf("%w: budget TTL %s must not be negative", ErrInvalidConfig, o.TTL)
	}
	if o.TTL == 0 {
		o.TTL = DefaultBudgetTTL
	}
	if o.TTL < time.Second {
		return nil, fmt.Errorf("%w: budget TTL %s must be at least 1s", ErrInvalidConfig, o.TTL)
	}
	if o.Percent < 0 || o.Percent > 10 {
		return nil, fmt.Errorf("%w: budget percent %g must be within 0..10 (0%%..1000%%)", ErrInvalidConfig, o.Percent)
	}
	if o.NoPercent && o.Percent != 0 {
		return nil, fmt.Errorf("%w: budget NoPercent set together with Percent %g", ErrInvalidConfig, o.Percent)
	}
	if o.Percent == 0 && !o.NoPercent {
		o.Percent = DefaultBudgetPercent
	}
	switch {
	case o.MinRetriesPerSec == 0:
		o.MinRetriesPerSec = DefaultBudgetMinRetriesPerSec
	case o.MinRetriesPerSec == -1:
		o.MinRetriesPerSec = 0
	case o.MinRetriesPerSec < 0:
		return nil, fmt.Errorf("%w: budget MinRetriesPerSec %d must be ≥ 0 or -1 (none)", ErrInvalidConfig, o.MinRetriesPerSec)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	b := &Budget{now: o.Now, slice: o.TTL / budgetSlices}
	// As in Finagle: with only a floor, requests earn nothing and each
	// retry costs 1; otherwise a request earns `scale` and a retry costs
	// scale/percent, so the sum of the window divided by that cost is the
	// number of retries allowed.
	if o.Percent == 0 {
		b.deposit, b.withdraw = 0, 1
	} else {
		b.deposit, b.withdraw = scale, int64(float64(scale)/o.Percent)
	}
	b.reserve = int64(o.MinRetriesPerSec) * int64(o.TTL/time.Second) * b.withdraw
	b.headAt = b.now()
	return b, nil
}

// advance drops slices older than the TTL. Called with mu held.
func (b *Budget) advance() {
	now := b.now()
	steps := int(now.Sub(b.headAt) / b.slice)
	if steps <= 0 {
		return
	}
	if steps > budgetSlices {
		steps = budgetSlices
	}
	for i := 0; i < steps; i++ {
		b.head = (b.head + 1) % budgetSlices
		b.slots[b.head] = 0
	}
	b.headAt = b.headAt.Add(b.slice * time.Duration(now.Sub(b.headAt)/b.slice))
}

func (b *Budget) sum() int64 {
	var s int64
	for _, v := range b.slots {
		s += v
	}
	return s
}

// Deposit records one request (first attempt, not a retry).
func (b *Budget) Deposit() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	b.slots[b.head] += b.deposit
}

// TryWithdraw reports whether one retry fits the budget, and if so spends
// it.
func (b *Budget) TryWithdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	if b.sum()+b.reserve < b.withdraw {
		return false
	}
	b.slots[b.head] -= b.withdraw
	return true
}

// Balance is the number of retries the budget would allow now.
func (b *Budget) Balance() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	return (b.sum() + b.reserve) / b.withdraw
}
