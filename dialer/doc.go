// Package dialer is a storm-safe dialer for Valkey clients.
//
// Client libraries redial as fast as they can: valkey-go redials on the
// next command with no backoff, go-redis retries "max number of clients
// reached" and dial errors up to 20 dials per command, GLIDE reconnects at
// once and then in lock-step. A whole fleet doing that after a failover
// keeps the server's accept queue full. A [Dialer] sits under the client
// library (valkey-go's DialCtxFn, go-redis's Options.Dialer; see the
// valkeygo and goredis subpackages) and decides, per target address and for
// the whole process, when a new connection may be attempted:
//
//   - Rate limit: a token bucket per target on NEW connections, shared by
//     every client in the process that uses the same *Dialer
//     (golang.org/x/time/rate). Pools fill slowly instead of all at once.
//   - Jittered first connect: dials during the first FirstConnectWindow
//     after a target is first seen are spread uniformly over that window,
//     so a fleet started together does not arrive together.
//   - Jittered reconnect: when a connection that had proven healthy is
//     lost (server restart, failover, CLIENT KILL — every client loses its
//     connection in the same instant), dials in the ReconnectWindow after
//     the loss are spread uniformly over it. The loss is not a failure:
//     the backoff stays reset. Each process draws its own point, so a
//     fleet of independent instances reconnects spread out, not in
//     lock-step (docs/benchmarks.md: 0 listen overflows where immediate
//     redialling caused 542–1,659, with the same 1 s recovery).
//   - Target-wide backoff (package backoff): every failure of any
//     connection to a target pushes back the next dial to that target.
//     The backoff resets only after proven health: the first non-error
//     reply arrived (the HELLO/AUTH handshake) and the connection then
//     stayed up for StableAfter. A TCP connect alone proves nothing: a
//     server at maxclients accepts and then rejects.
//   - Overload detection: the returned net.Conn sniffs the first reply
//     line. "-ERR max number of clients reached", and EOF or reset before
//     any reply (what TLS clients see at maxclients), are reported as
//     overload of the whole target. The rejection itself is held back
//     and Read returns an error wrapping [ErrOverloaded] instead, so the
//     client library never parses a reply it did not ask for. Adapters
//     can also call [Dialer.ReportOverload].
//   - Circuit breaker: after BreakerThreshold consecutive failures the
//     target is open for BreakerOpenFor; dials fail at once with
//     [ErrCircuitOpen] without touching the network. Then up to
//     HalfOpenProbes probe dials are let through; a probe that completes
//     the handshake closes the breaker, one that fails reopens it.
//
// Share one *Dialer across every client of a process: its per-target state
// is the point. It holds no package-level state, so tests and libraries
// can make as many as they like.
//
// Waiting (backoff, first-connect jitter, rate limit) respects the dial's
// context: when the wait would outlast the context's deadline the dial
// fails at once with [ErrBackingOff] or [ErrRateLimited] instead of
// sleeping to the deadline.
package dialer
