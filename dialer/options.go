package dialer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"time"

	"github.com/stormguard/stormguard/backoff"
)

// Defaults for Options fields left zero.
const (
	DefaultRate               = 20 // new connections per second per target
	DefaultBurst              = 10
	DefaultFirstConnectWindow = time.Second
	DefaultReconnectWindow    = time.Second
	DefaultStableAfter        = 5 * time.Second
	DefaultBreakerThreshold   = 5
	DefaultBreakerOpenFor     = 5 * time.Second
	DefaultHalfOpenProbes     = 1
	DefaultDialTimeout        = 5 * time.Second
	// DefaultAcceptRate is the new connections per second a Valkey is
	// assumed to admit without overflowing its accept queue when the
	// fleet size is known (FleetSize or ObserveClients), until the
	// target's own episodes teach otherwise (AIMD). The storm lab's
	// Valkey admitted 6,000–10,000/s on a quiet 2-core host and 2–3×
	// less on a busy one; 5,000/s with the ramp (DisconnectCost) is the
	// compromise simulate put within 1.5× of the fastest recovery on the
	// quiet host at 10,000 clients, ≥ 10× fewer overflows on the busy
	// one at 15,000 (docs/backoff.md, "The learned admission rate").
	DefaultAcceptRate = 5000
	// DefaultConnectCost is the server's main-thread CPU per connection
	// it admits over plaintext TCP: accept, client creation, the first
	// command (PING), and the client's close and free, so it errs high.
	// Measured 17.3 µs on valkey-server 8.0.1 pinned to one core of the
	// storm lab's 2-core VM (bench/connectcost.sh: valkey-benchmark -k 0,
	// 200,000 connections, 2026-12-03); a PING alone cost 4.2 µs, the
	// teardown of one of 10,000 idle clients by CLIENT KILL 7.9 µs. Over
	// TLS a connection cost 493 µs (28×; see ConnectCost).
	DefaultConnectCost = 17 * time.Microsecond
	// DefaultServerShare is the share of the server's idle main thread a
	// reconnecting fleet's admissions are planned to use: the starting
	// rate is ServerShare × (1 − ρ) / ConnectCost. The thread could admit
	// 1 / ConnectCost (~58,000/s), but the 128-slot accept queue must also
	// absorb the fleet's arrival bunching and stalls of the thread (the
	// teardown of a killed fleet, the clients already back). On the storm
	// lab's pinned server, fixed starting rates readmitted 15,000 killed
	// clients with no overflow at 10,000/s (twice) and 20,000/s (once),
	// but with 906 and 282 at 15,000/s (bursts of ~2,000 dials in 100 ms),
	// and 2,000 clients with none at 10,000–15,000/s but 3,380 at
	// 20,000/s: 0.17 (10,000/s at 17 µs on a server 2% busy) is the share
	// that overflowed in no kill run (docs/backoff.md, "The server-told
	// starting rate").
	DefaultServerShare = 0.17
	// DefaultMaxAcceptRateFactor: MaxAcceptRate defaults to this many
	// times AcceptRate.
	DefaultMaxAcceptRateFactor = 4
	DefaultMaxReconnectWindow  = 30 * time.Second
	// DefaultWindowGrowth multiplies the reconnect window on each
	// congestion signal. 1.5 rather than 2: a fleet-sized window is
	// already about right, so a failure inside it calls for a
	// correction, not for sending the failed client to the back of a
	// window twice as long (docs/backoff.md, "How fast the window
	// grows").
	DefaultWindowGrowth = 1.5
	// MaxWindowGrowth is the largest WindowGrowth accepted.
	MaxWindowGrowth = 4
	// DefaultDisconnectCost: the window's density ramps up over
	// connections × 50 µs after a close or reset. CLIENT KILL of
	// 1,000–15,000 idle clients took 45 µs each on the storm lab's 2-core
	// VM, during which Valkey accepts nothing; dials then are most of a
	// well-spread fleet's overflows. Opening the window only after that
	// time (tried 2026-12-02) cost the whole delay in recovery; the ramp
	// costs half of it and cut simulate's overflows 3–5×.
	DefaultDisconnectCost = 50 * time.Microsecond
	// DefaultSlowConnect: a TCP connect that takes this long had its SYN
	// dropped and retransmitted (the kernel's first SYN retransmit is at
	// 1 s), i.e. the server's queues overflowed.
	DefaultSlowConnect = 900 * time.Millisecond
	// DefaultSYNDeadline: the per-attempt SYN deadline is off unless
	// asked for. With it on (SYNDeadline 1s: the kernel's first SYN
	// retransmit, TCP_TIMEOUT_INIT, beyond which a cut gains nothing) the
	// lab's 10,000-client kill had 5,436 overflows, 3.2× fewer than
	// immediate, where the dialer without it had none: redials capped at
	// the kernel's retransmit time come sooner than TCP's own backoff and
	// kept an overload going (docs/backoff.md, "The SYN deadline").
	DefaultSYNDeadline time.Duration = -1
	// DefaultSilentCut: in an episode of timeouts a connect attempt with
	// no SYN-ACK this long after it started is cut, 200 ms before the
	// kernel's first SYN retransmit (1 s), and the dial fails at
	// DialTimeout as the uncut attempt would have (docs/backoff.md, "An
	// episode of timeouts").
	DefaultSilentCut = 800 * time.Millisecond
)

// DefaultBackoff returns the target-wide backoff used when Options.Backoff
// is nil: full jitter from 100 ms up to 10 s.
func DefaultBackoff() backoff.Policy {
	return backoff.FullJitter{Base: 100 * time.Millisecond, Cap: 10 * time.Second}
}

// Errors returned by New for option combinations that cannot work.
var (
	// ErrInvalidRate: Rate is negative (other than -1) or Burst is
	// negative.
	ErrInvalidRate = errors.New("dialer: rate and burst must be positive, or -1 for unlimited rate")
	// ErrBurstWithoutRate: Burst is set while Rate is -1 (unlimited).
	ErrBurstWithoutRate = errors.New("dialer: Burst set with unlimited Rate")
	// ErrInvalidDuration: a duration field is negative (other than -1
	// where documented).
	ErrInvalidDuration = errors.New("dialer: negative duration")
	// ErrBreakerDisabled: BreakerOpenFor or HalfOpenProbes set while
	// BreakerThreshold is -1 (breaker off).
	ErrBreakerDisabled = errors.New("dialer: breaker settings given with BreakerThreshold -1 (disabled)")
	// ErrInvalidBreaker: BreakerThreshold or HalfOpenProbes out of range.
	ErrInvalidBreaker = errors.New("dialer: BreakerThreshold must be ≥ 1 or -1, HalfOpenProbes ≥ 0")
	// ErrInvalidBackoff wraps the Backoff policy's Validate error.
	ErrInvalidBackoff = errors.New("dialer: invalid backoff policy")
	// ErrInvalidGrowth: WindowGrowth is not within (1, MaxWindowGrowth].
	ErrInvalidGrowth = errors.New("dialer: WindowGrowth must be > 1 and ≤ 4")
	// ErrInvalidSYNDeadline: SYNDeadline is neither -1 nor at least
	// 200ms, or not below an explicit DialTimeout (it could never cut).
	ErrInvalidSYNDeadline = errors.New("dialer: SYNDeadline must be -1, or at least 200ms and below DialTimeout")
	// ErrInvalidSilentCut: SilentCut is neither -1 nor within [200ms,
	// 1s): at 1 s or later the kernel has sent the SYN again.
	ErrInvalidSilentCut = errors.New("dialer: SilentCut must be -1, or at least 200ms and below 1s")
)

// Errors returned by dials that were not attempted. Each is wrapped with
// the target address.
var (
	// ErrCircuitOpen: the target's breaker is open (or half-open with
	// every probe slot taken); no dial was made.
	ErrCircuitOpen = errors.New("dialer: circuit open")
	// ErrBackingOff: the target is backing off and the context's deadline
	// comes before the next allowed dial.
	ErrBackingOff = errors.New("dialer: target backing off")
	// ErrRateLimited: the target's new-connection rate is exhausted until
	// after the context's deadline.
	ErrRateLimited = errors.New("dialer: new-connection rate limit")
	// ErrOverloaded: returned by Conn.Read in place of the server's
	// "-ERR max number of clients reached" rejection.
	ErrOverloaded = errors.New("dialer: server overloaded")
)

// Options configure a Dialer. Pass by value; zero fields mean the documented
// default.
type Options struct {
	// Rate is the number of new connections per second allowed per target
	// across the process (20): a token bucket that keeps a pool from
	// growing all at once. -1 means unlimited.
	//
	// A dial that replaces a connection lost in the current reconnect
	// episode takes a credit instead of a token: every loss of a
	// connection the server had admitted gives the target one credit,
	// a credited dial that fails before the server admits it gives it
	// back, and unused credits expire with the episode. Those redials are
	// already paced by the reconnect window, sized for the whole fleet;
	// the bucket held a pool of 100 that a kill closed to 20 redials a
	// second, ~4.5 s whatever the server admits. Dials beyond the lost
	// connections (the pool growing) and all dials outside an episode
	// (or with ReconnectWindow -1) still take tokens.
	Rate float64
	// Burst is how many new connections may start at once per target (10);
	// redials on credits (see Rate) neither need nor use its tokens.
	Burst int
	// FirstConnectWindow spreads dials made during this long after a
	// target is first seen uniformly over the window (1s); -1 disables.
	FirstConnectWindow time.Duration
	// ReconnectWindow is the reconnect window used while the fleet size
	// is unknown (1s): the first dial after any loss of a connection to
	// the target (server restart, failover, CLIENT KILL, a timeout, a
	// failure — whatever the connection's age) starts at a uniform random
	// point in the window that begins at the loss. Independent processes
	// each draw their own point, so a fleet's reconnects arrive spread
	// out, not in lock-step. -1 disables the window entirely (and with it
	// FleetSize and the learned growth).
	ReconnectWindow time.Duration
	// FleetSize is a hint: how many connections the whole fleet keeps to
	// this server (all processes, all pools). When it (or a count passed
	// to ObserveClients) is known, the window is FleetSize over the
	// learned admission rate (AcceptRate to begin with)
	// instead of ReconnectWindow: small fleets reconnect at once, large
	// ones are spread just enough. 0 = unknown.
	FleetSize int
	// AcceptRate is the new connections per second the server is assumed
	// to admit without overflowing (DefaultAcceptRate) until the target's
	// own reconnect episodes teach the Dialer otherwise: each congestion
	// signal divides the learned rate by WindowGrowth, each episode
	// without one raises it by AcceptRate/2 (AIMD), up to MaxAcceptRate.
	// With the fleet size unknown, ReconnectWindow is scaled by
	// AcceptRate over the learned rate.
	AcceptRate float64
	// MaxAcceptRate caps the learned admission rate, the server-told
	// starting rate and the faster rate of an episode a refused connect
	// started again (4 × AcceptRate). Set it to AcceptRate, and
	// ConnectCost to -1, to keep the rate fixed except for cuts.
	MaxAcceptRate float64
	// ConnectCost is the server's CPU time per connection it admits
	// (DefaultConnectCost, 17µs, measured for plaintext Valkey 8). With
	// two INFO readings passed to ObserveInfo or ObserveServer (or one
	// that has the server's uptime), the target's episodes start at
	// ServerShare × (1 − ρ) / ConnectCost new connections per second
	// instead of AcceptRate, where ρ is the share of the server's main
	// thread busy with anything else between the readings (since it
	// started); within [AcceptRate/4, MaxAcceptRate]. Over TLS a
	// connection costs the server ~30× more (a full handshake: 493µs
	// measured), so the rate this would give (~350/s) is far below
	// AcceptRate, and the lab has not measured a TLS fleet at such a
	// rate: targets dialled with DialTLSContext keep AcceptRate; a client
	// library that does TLS itself above DialContext should set
	// ConnectCost to -1 (or to its measured handshake cost, which starts
	// it at AcceptRate/4). -1: off, AcceptRate always.
	ConnectCost time.Duration
	// ServerShare is the share of the server's idle main thread the
	// server-told starting rate plans to use (DefaultServerShare, 0.17),
	// within (0, 1].
	ServerShare float64
	// MaxReconnectWindow caps the window, however large the fleet or the
	// learned growth (30s).
	MaxReconnectWindow time.Duration
	// DisconnectCost is the server's time per connection lost in a
	// fleet-wide disconnect (DefaultDisconnectCost, 50µs): with the fleet
	// size known, after an episode's first loss by a close or reset the
	// density of the dials rises linearly over FleetSize ×
	// DisconnectCost (at most the window) and is flat after it, so few
	// clients dial while the server is still tearing the fleet's
	// connections down; the episode lasts half the ramp longer than the
	// window. -1 disables (the window is uniform from the loss).
	DisconnectCost time.Duration
	// WindowGrowth is the factor by which each congestion signal (a
	// failed, timed-out or rejected connect, a connection lost before
	// StableAfter, a slow connect) multiplies the target's reconnect
	// window (DefaultWindowGrowth, 1.5). It must be within (1, 4]: a
	// window that cannot grow would leave a fleet of unknown size
	// unprotected, so 1 or less is an error (ErrInvalidGrowth), not "off"
	// (ReconnectWindow -1 turns the window off).
	WindowGrowth float64
	// SlowConnect is the connect duration that counts as a congestion
	// signal (900ms): the SYN was dropped and retransmitted. Each one
	// grows the target's window (WindowGrowth), as a failure does; -1
	// disables.
	SlowConnect time.Duration
	// SYNDeadline turns on and caps the adaptive deadline of one TCP
	// connect attempt (off by default, DefaultSYNDeadline: it cost the
	// lab's overflow margin; 1s is the useful cap). An attempt in a
	// reconnect episode begun
	// by a close or reset that has no SYN-ACK within 200ms + srtt + 4 ×
	// rttvar of the target's connect times (RFC 6298's estimator; 500ms
	// before any connect was seen) had its SYN dropped on a full accept
	// queue: it is abandoned (the socket closed) and dialled again, paced
	// like a retry in the reconnect window but never later than the
	// kernel would have retransmitted the SYN (1 s), and it counts as
	// congestion as a slow connect does. Once per run: after an abandon,
	// attempts are not cut until one connects. When the deadline would exceed
	// SYNDeadline (a long path), attempts are not cut. DialTimeout still
	// bounds the whole connect, redials included. 0 or -1: off;
	// otherwise at least 200ms and below DialTimeout, else
	// ErrInvalidSYNDeadline.
	SYNDeadline time.Duration
	// SilentCut is how long a connect attempt in an episode of timeouts
	// (a blip: the server answers nothing) may wait for its SYN-ACK
	// (DefaultSilentCut, 800ms): then it is cut, before the kernel sends
	// its SYN again at 1 s, and the dial fails at DialTimeout as the
	// uncut attempt would have. The fleet's SYNs are then the ones its
	// windows placed, not retransmits the kernel fires in batches when
	// the blip ends. Not in an episode begun by a close, reset or
	// refusal; not for a path whose connects take longer than it allows.
	// -1 off (use it when Dial does more than the TCP connect, e.g. a
	// TLS handshake); otherwise within [200ms, 1s), else
	// ErrInvalidSilentCut.
	SilentCut time.Duration
	// Backoff is the target-wide reconnect policy (DefaultBackoff(): full
	// jitter 100ms..10s). After a refused connect (nothing listens: a
	// restart) its delay is at most half of how long the target has been
	// refusing, so a client is back at most half the outage after the
	// server is; a long outage still reaches the policy's cap (see
	// docs/backoff.md, "A refused client's backoff").
	Backoff backoff.Policy
	// StableAfter is how long a connection must stay up after its
	// handshake before the target's backoff resets (5s); -1 resets at the
	// handshake.
	StableAfter time.Duration
	// BreakerThreshold is the number of consecutive failures that opens
	// the target's circuit (5); -1 disables the breaker.
	BreakerThreshold int
	// BreakerOpenFor is how long an open circuit refuses dials before it
	// lets probes through (5s).
	BreakerOpenFor time.Duration
	// HalfOpenProbes is how many probe dials may be in flight while half
	// open (1).
	HalfOpenProbes int
	// DialTimeout bounds one dial, TCP connect only (5s); -1 means only
	// the context bounds it.
	DialTimeout time.Duration
	// Dial makes the underlying connection (a net.Dialer with
	// DialTimeout). Tests replace it, e.g. to dial inside a network
	// namespace.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// DisableSniff turns off reading the first reply line for overload
	// and handshake detection; callers must then call MarkHealthy and
	// ReportOverload themselves.
	DisableSniff bool
	// OnEvent, if set, is called for every decision the dialer makes.
	// It runs synchronously and must not block or call the Dialer.
	OnEvent func(Event)
	// Rand is the jitter source (math/rand/v2's process-wide source). It
	// is only called with the Dialer's lock held.
	Rand backoff.Rand
	// Now is the clock (time.Now).
	Now func() time.Time
}

// withDefaults validates o and fills defaults.
func (o Options) withDefaults() (Options, error) {
	switch {
	case o.Rate == -1:
		if o.Burst != 0 {
			return o, ErrBurstWithoutRate
		}
	case o.Rate < 0 || o.Burst < 0:
		return o, ErrInvalidRate
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Burst == 0 && o.Rate != -1 {
		o.Burst = DefaultBurst
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		off  bool // -1 allowed
	}{
		{"FirstConnectWindow", o.FirstConnectWindow, true},
		{"ReconnectWindow", o.ReconnectWindow, true},
		{"MaxReconnectWindow", o.MaxReconnectWindow, false},
		{"SlowConnect", o.SlowConnect, true},
		{"DisconnectCost", o.DisconnectCost, true},
		{"ConnectCost", o.ConnectCost, true},
		{"StableAfter", o.StableAfter, true},
		{"BreakerOpenFor", o.BreakerOpenFor, false},
		{"DialTimeout", o.DialTimeout, true},
	} {
		if d.v < 0 && !(d.off && d.v == -1) {
			return o, fmt.Errorf("%w: %s %s", ErrInvalidDuration, d.name, d.v)
		}
	}
	if err := o.breakerDefaults(); err != nil {
		return o, err
	}
	if o.FirstConnectWindow == 0 {
		o.FirstConnectWindow = DefaultFirstConnectWindow
	}
	if o.ReconnectWindow == 0 {
		o.ReconnectWindow = DefaultReconnectWindow
	}
	if o.FleetSize < 0 || !(o.AcceptRate >= 0) || math.IsInf(o.AcceptRate, 0) {
		return o, fmt.Errorf("%w: FleetSize %d and AcceptRate %g must not be negative", ErrInvalidRate, o.FleetSize, o.AcceptRate)
	}
	if o.AcceptRate == 0 {
		o.AcceptRate = DefaultAcceptRate
	}
	switch {
	case o.MaxAcceptRate == 0:
		o.MaxAcceptRate = DefaultMaxAcceptRateFactor * o.AcceptRate
	case !(o.MaxAcceptRate >= o.AcceptRate) || math.IsInf(o.MaxAcceptRate, 0): // also NaN
		return o, fmt.Errorf("%w: MaxAcceptRate %g must be at least AcceptRate %g", ErrInvalidRate, o.MaxAcceptRate, o.AcceptRate)
	}
	if o.MaxReconnectWindow == 0 {
		o.MaxReconnectWindow = DefaultMaxReconnectWindow
	}
	if o.ConnectCost == 0 {
		o.ConnectCost = DefaultConnectCost
	}
	switch {
	case o.ServerShare == 0:
		o.ServerShare = DefaultServerShare
	case !(o.ServerShare > 0 && o.ServerShare <= 1): // also NaN
		return o, fmt.Errorf("%w: ServerShare %g must be within (0, 1]", ErrInvalidRate, o.ServerShare)
	}
	switch {
	case o.WindowGrowth == 0:
		o.WindowGrowth = DefaultWindowGrowth
	case !(o.WindowGrowth > 1 && o.WindowGrowth <= MaxWindowGrowth): // also NaN
		return o, fmt.Errorf("%w: WindowGrowth %g", ErrInvalidGrowth, o.WindowGrowth)
	}
	if o.DisconnectCost == 0 {
		o.DisconnectCost = DefaultDisconnectCost
	}
	if o.SlowConnect == 0 {
		o.SlowConnect = DefaultSlowConnect
	}
	if o.StableAfter == 0 {
		o.StableAfter = DefaultStableAfter
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if err := o.checkSYNDeadline(); err != nil {
		return o, err
	}
	if o.SYNDeadline == 0 {
		o.SYNDeadline = DefaultSYNDeadline
	}
	if err := o.checkSilentCut(); err != nil {
		return o, err
	}
	if o.SilentCut == 0 {
		o.SilentCut = DefaultSilentCut
	}
	if o.Backoff == nil {
		o.Backoff = DefaultBackoff()
	}
	if err := o.Backoff.Validate(); err != nil {
		return o, fmt.Errorf("%w: %w", ErrInvalidBackoff, err)
	}
	if o.Dial == nil {
		nd := &net.Dialer{}
		o.Dial = nd.DialContext
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// breakerDefaults validates the breaker's settings and fills their
// defaults.
func (o *Options) breakerDefaults() error {
	switch {
	case o.BreakerThreshold == -1:
		if o.BreakerOpenFor != 0 || o.HalfOpenProbes != 0 {
			return ErrBreakerDisabled
		}
	case o.BreakerThreshold < 0 || o.HalfOpenProbes < 0:
		return ErrInvalidBreaker
	}
	if o.BreakerThreshold == 0 {
		o.BreakerThreshold = DefaultBreakerThreshold
	}
	if o.BreakerOpenFor == 0 {
		o.BreakerOpenFor = DefaultBreakerOpenFor
	}
	if o.HalfOpenProbes == 0 {
		o.HalfOpenProbes = DefaultHalfOpenProbes
	}
	return nil
}

// checkSYNDeadline validates an explicit SYNDeadline (DialTimeout has
// its default by then).
func (o Options) checkSYNDeadline() error {
	v := o.SYNDeadline
	switch {
	case v == 0 || v == -1:
		return nil
	case v < synFloor:
		return fmt.Errorf("%w: %s", ErrInvalidSYNDeadline, v)
	case o.DialTimeout > 0 && v >= o.DialTimeout:
		return fmt.Errorf("%w: %s with DialTimeout %s", ErrInvalidSYNDeadline, v, o.DialTimeout)
	}
	return nil
}

// checkSilentCut validates an explicit SilentCut: at 1 s or later the
// kernel has sent the SYN again, below 200 ms a loaded host's SYN-ACK
// may not have come.
func (o Options) checkSilentCut() error {
	if v := o.SilentCut; v != 0 && v != -1 && (v < synFloor || v >= kernelSYNRTO) {
		return fmt.Errorf("%w: %s", ErrInvalidSilentCut, v)
	}
	return nil
}

// EventKind names a dialer decision.
type EventKind string

// Event kinds.
const (
	EventDial          EventKind = "dial"           // a network dial starts (Delay: how long the dialer held it back; a late wake's respread comes on top)
	EventDialFailed    EventKind = "dial_failed"    // it failed (Err)
	EventConnected     EventKind = "connected"      // TCP connected
	EventHandshake     EventKind = "handshake"      // first non-error reply read
	EventHealthy       EventKind = "healthy"        // stable: backoff reset
	EventOverload      EventKind = "overload"       // maxclients / handshake EOF (Err)
	EventConnLost      EventKind = "conn_lost"      // read error before stable (Err)
	EventBackoff       EventKind = "backoff"        // next dial pushed back by Delay
	EventBreakerOpen   EventKind = "breaker_open"   // breaker opened
	EventBreakerHalf   EventKind = "breaker_half"   // breaker lets probes through
	EventBreakerClosed EventKind = "breaker_closed" // probe succeeded
	EventRefused       EventKind = "refused"        // dial refused without I/O (Err)
	EventSlowConnect   EventKind = "slow_connect"   // connect took ≥ SlowConnect: window grows
	EventWindow        EventKind = "window"         // the reconnect window changed (Delay = new window)
	EventSYNTimeout    EventKind = "syn_timeout"    // a connect attempt had no SYN-ACK by its deadline: abandoned, redialled after Delay
)

// Event is one dialer decision, for logging and metrics.
type Event struct {
	Time   time.Time
	Target string
	Kind   EventKind
	// Delay is the backoff delay (EventBackoff), the new window
	// (EventWindow) or the wait before a dial.
	Delay time.Duration
	// Failures is the target's consecutive-failure count after the event.
	Failures int
	Err      error
}
