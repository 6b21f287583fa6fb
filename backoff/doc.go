// Package backoff computes reconnect delays that do not start connection
// storms, and bounds retries with a budget.
//
// A connection storm is usually a whole fleet reacting to one event (a
// failover, a restart, a network blip) in the same millisecond. What each
// client does next decides whether the server recovers: clients that redial
// at once, or on the same unjittered schedule, arrive in waves that keep the
// accept queue full. The policies here spread those arrivals out.
//
// # Fleet behaviour
//
// A policy only sees one client's failures, so what it does to a fleet of N
// clients that lost their connections together follows from its shape.
// Every policy here redials at once after the loss (n = 0), so the first
// wave is all N clients in the same instant whatever the policy; only the
// retries differ. Full jitter after the n-th failure spreads the survivors
// uniformly over min(Cap, Base·2^(n−1)), so the retry rate falls by half per
// round until it fits what the server admits: the fleet recovers in a few
// rounds more than log2(N/(rate·Base)), at most about twice the time an
// ideal schedule would take. GLIDE's ±j% around the same step keeps the
// fleet in narrow waves, and its unjittered tail in exact lock-step.
//
// That first wave is why package dialer adds a reconnect window before the
// first redial, sized from the fleet's connection count over an admission
// rate it learns per server (5,000/s to begin with, cut by a third on
// every congestion signal, raised after clean reconnects):
// the policies here then act on the retries only. The window, not a
// policy, is what keeps a fleet of 10,000–15,000 clients from overflowing
// the accept queue; a policy's growth per failure then decides the
// recovery's tail, which is why the dialer's window grows by 1.5× and not
// 2× (a doubling sent the last failed clients to the back of a window
// twice as long, measured in the storm lab).
// `stormguard backoff --fleet N` answers "which settings recover a fleet of N
// fastest without overflowing this server?" by simulating them (`stormguard
// simulate` runs one), and `stormguard backoff --clients N` shows the offered
// load alone.
//
// # Policies
//
// A [Policy] maps the number of consecutive failures n to the delay before
// the next attempt. n = 0 is the first connect after a disconnect; every
// policy here returns 0 for it (connect at once, sleep only after a
// failure). n = 1 is the delay after the first failure, and so on.
//
//   - [GLIDE] reproduces valkey-glide's reconnect strategy with the
//     semantics of its code in the released tag v2.5.1 (glide-core
//     retry_strategies.rs), not of its docs: factor·base^n ms × U(1−j, 1+j) for n = 1..retries, then
//     factor·base^retries ms, unjittered, forever. The unjittered tail keeps
//     a fleet in lock-step, which is why it is here: to preview and compare.
//   - [FullJitter], [EqualJitter] and [DecorrelatedJitter] are the three
//     schedules from Marc Brooker's "Exponential Backoff and Jitter" (AWS
//     Architecture Blog, 2015). Full jitter does the least work.
//   - [GRPC] is gRPC's connection backoff (doc/connection-backoff.md):
//     1 s initial, ×1.6, ±20% jitter, 120 s max, 20 s minimum connect
//     timeout.
//
// Policies are plain values whose zero fields mean documented defaults,
// except jitter amounts, which are literal: a jitter of 0 means no jitter
// ([DefaultGLIDE] and [DefaultGRPC] give the libraries' defaults).
// Validate reports a bad configuration as an error wrapping
// [ErrInvalidConfig], and [NewSchedule] refuses it. Policies fail safe: a
// Delay called on an invalid policy anyway returns [FailSafe]'s delay,
// never 0.
//
// # Randomness
//
// Every random draw goes through the small [Rand] interface, so tests and
// previews can pass a seeded *math/rand/v2.Rand and get reproducible
// schedules. A nil Rand means the process-wide math/rand/v2 source, which is
// safe for concurrent use. A *rand.Rand is not: guard it yourself or give
// each goroutine its own.
//
// # Schedules
//
// A [Schedule] is the stateful side: it counts failures, remembers the
// previous delay (which DecorrelatedJitter needs), and resets. Reset it only
// after the connection proved healthy (handshake done and a stability window
// passed), not when TCP connect succeeds: resetting on connect turns an
// accept-then-drop server into hundreds of attempts per second per client.
//
// # Retry budgets
//
// [Budget] is Finagle's RetryBudget: retries may add at most a percentage of
// the requests seen in the last TTL (default 20% over 10 s), plus a small
// per-second floor for clients with little traffic. Deposit on every
// request, TryWithdraw before every retry.
package backoff
