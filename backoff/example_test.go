package backoff_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/stormguard/stormguard/backoff"
)

// GLIDE's default reconnect strategy: an immediate first reconnect, five
// jittered growing steps, then 3.2 s unjittered forever.
func ExampleGLIDE() {
	p := backoff.DefaultGLIDE()
	r := rand.New(rand.NewPCG(1, 1))
	for n := 0; n <= 7; n++ {
		fmt.Printf("after %d failures: %s\n", n, p.Delay(n, 0, r).Round(time.Millisecond))
	}
	// Output:
	// after 0 failures: 0s
	// after 1 failures: 187ms
	// after 2 failures: 466ms
	// after 3 failures: 905ms
	// after 4 failures: 1.807s
	// after 5 failures: 3.172s
	// after 6 failures: 3.2s
	// after 7 failures: 3.2s
}

// A Schedule carries the failure count and the previous delay between
// calls; reset it only once the connection has proved healthy.
func ExampleSchedule() {
	s, err := backoff.NewSchedule(backoff.DecorrelatedJitter{Base: 100 * time.Millisecond, Cap: 2 * time.Second},
		rand.New(rand.NewPCG(42, 42)))
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 6 {
		fmt.Println(s.Failure().Round(time.Millisecond))
	}
	s.Reset() // handshake done and the connection stayed up: start over
	fmt.Println("after reset:", s.Failures(), "failures")
	// Output:
	// 161ms
	// 248ms
	// 655ms
	// 904ms
	// 797ms
	// 233ms
	// after reset: 0 failures
}

// Full jitter spreads every attempt over [0, min(cap, base·2^(n−1))).
func ExampleFullJitter() {
	p := backoff.FullJitter{Base: 100 * time.Millisecond, Cap: time.Second}
	r := rand.New(rand.NewPCG(9, 9))
	for n := 1; n <= 6; n++ {
		fmt.Printf("%d: %s\n", n, p.Delay(n, 0, r).Round(time.Millisecond))
	}
	// Output:
	// 1: 36ms
	// 2: 193ms
	// 3: 219ms
	// 4: 737ms
	// 5: 762ms
	// 6: 997ms
}

// A retry budget lets retries add at most 20% to the traffic of the last
// 10 s, plus a floor of 10 retries per second.
func ExampleBudget() {
	b, err := backoff.NewBudget(backoff.BudgetOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 1000 {
		b.Deposit() // one per request
	}
	retries := 0
	for b.TryWithdraw() { // one per retry; give up when it says no
		retries++
	}
	fmt.Println("retries allowed:", retries)
	// Output:
	// retries allowed: 300
}

// Policies fail safe: a configuration that cannot describe a schedule is
// an error when the schedule is made, never a schedule of zero delays,
// and a jitter of 0 means no jitter at all.
func ExampleNewSchedule_failSafe() {
	// GLIDE{} has 0 retries, which released GLIDE underflows on: use
	// DefaultGLIDE() for GLIDE's defaults.
	_, err := backoff.NewSchedule(backoff.GLIDE{Factor: 100}, nil)
	fmt.Println(err)
	_, err = backoff.NewSchedule(backoff.GLIDE{Retries: 5, JitterPercent: 150}, nil)
	fmt.Println(errors.Is(err, backoff.ErrInvalidConfig))

	exact, err := backoff.NewSchedule(backoff.GLIDE{Retries: 3, Factor: 100, ExponentBase: 2, JitterPercent: 0}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 4 {
		fmt.Print(exact.Failure(), " ")
	}
	fmt.Println()
	// Output:
	// backoff: invalid configuration: glide number_of_retries must be at least 1 (released GLIDE underflows on 0)
	// true
	// 200ms 400ms 800ms 800ms
}
