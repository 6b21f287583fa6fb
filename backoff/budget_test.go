package backoff

import (
	"errors"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func drain(b *Budget) int {
	n := 0
	for b.TryWithdraw() {
		n++
		if n > 1e6 {
			break
		}
	}
	return n
}

func TestBudget(t *testing.T) {
	tests := []struct {
		name     string
		opts     BudgetOptions
		requests int
		want     int // retries allowed right after the requests
	}{
		// Finagle defaults: 10/s floor × 10 s TTL = 100, plus 20%.
		{"defaults, no traffic: the floor", BudgetOptions{}, 0, 100},
		{"defaults, 1000 requests: floor + 20%", BudgetOptions{}, 1000, 300},
		{"no floor, 50%", BudgetOptions{Percent: 0.5, MinRetriesPerSec: -1}, 40, 20},
		{"floor only", BudgetOptions{NoPercent: true, MinRetriesPerSec: 2, TTL: 5 * time.Second}, 1000, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1e9, 0)}
			tt.opts.Now = clk.Now
			b, err := NewBudget(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < tt.requests; i++ {
				b.Deposit()
			}
			if bal := b.Balance(); bal != int64(tt.want) {
				t.Errorf("Balance = %d, want %d", bal, tt.want)
			}
			if got := drain(b); got != tt.want {
				t.Errorf("retries allowed = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestBudgetTTL: deposits and withdrawals age out after the TTL, so the
// budget returns to its floor.
func TestBudgetTTL(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	b, err := NewBudget(BudgetOptions{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		b.Deposit()
	}
	if got := drain(b); got != 200 {
		t.Fatalf("retries = %d, want 100 floor + 100 earned", got)
	}
	clk.Add(5 * time.Second)
	if b.TryWithdraw() {
		t.Fatal("withdrawals within the TTL must keep the budget empty")
	}
	clk.Add(5*time.Second + time.Millisecond)
	if got := drain(b); got != 100 {
		t.Fatalf("after the TTL: retries = %d, want the floor of 100", got)
	}
	// The deposits have expired too: new requests earn afresh.
	clk.Add(11 * time.Second)
	for i := 0; i < 50; i++ {
		b.Deposit()
	}
	if got := b.Balance(); got != 110 {
		t.Fatalf("balance = %d, want 100 + 10", got)
	}
}

func TestBudgetConcurrent(t *testing.T) {
	b, err := NewBudget(BudgetOptions{MinRetriesPerSec: -1, Percent: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				b.Deposit()
				if b.TryWithdraw() {
					mu.Lock()
					granted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if granted > 800 || granted < 700 {
		t.Errorf("granted %d retries for 8000 requests at 10%%, want ≈800", granted)
	}
}

func TestBudgetInvalid(t *testing.T) {
	for _, o := range []BudgetOptions{
		{Percent: -0.1}, {Percent: 11}, {TTL: -time.Second}, {TTL: 10 * time.Millisecond},
		{MinRetriesPerSec: -2}, {NoPercent: true, Percent: 0.3},
	} {
		if _, err := NewBudget(o); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewBudget(%+v) = %v, want ErrInvalidConfig", o, err)
		}
	}
}
