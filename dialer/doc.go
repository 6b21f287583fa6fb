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
//     Redials that replace connections lost in a reconnect episode are
//     not growth: each lost connection gives the target a credit, and a
//     dial inside the episode takes a credit instead of a token, so a
//     pool that a failover closed comes back at the window's pace, not
//     at 20 a second (see Options.Rate).
//   - Jittered first connect: dials during the first FirstConnectWindow
//     after a target is first seen are spread uniformly over that window,
//     so a fleet started together does not arrive together.
//   - Reconnect window: the first dial after any loss of a connection to
//     the target — a server restart, failover or CLIENT KILL, a read that
//     timed out, a failed or rejected attempt, whatever the connection's
//     age — starts at a uniform random point in the window that begins at
//     the loss. The loss of a healthy connection is not a failure: the
//     backoff stays reset.
//   - Target-wide backoff (package backoff): every failure of any
//     connection to a target pushes back the next dial to that target
//     (the later of the policy's delay and a point in the grown window).
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
// # Fleet behaviour
//
// A fleet has no coordinator, so each Dialer sizes its reconnect window
// from what it can know: the fleet's connection count — Options.FleetSize,
// or better the server's connected_clients passed to ObserveInfo or
// ObserveClients while it was healthy — divided by the rate the server
// admits (below), and ReconnectWindow (1 s) when the count is unknown.
// Every instance draws
// its own point in that window, so N instances arrive at about that rate
// and the fleet is back in about N/rate. After a close or reset (a
// restart, failover or CLIENT KILL) the draw's density rises linearly
// over N × Options.DisconnectCost (50 µs) before it is flat: the server
// spends about that long tearing down the fleet it lost and accepts
// nothing meanwhile (CLIENT KILL of 15,000 clients takes ~0.7 s), so few
// dials land in a queue nobody drains, at the cost of half that time. A
// small fleet gets a small window: 30 connections reconnect within 6 ms.
// None of it depends on how old the lost connection was, and there is no
// switch that turns it off for young connections. A dial whose wait ended
// late (a CPU-starved process fires every due timer at once) is spread
// again over how late it was, so a stall does not turn the window back
// into a burst. For the same reason the window starts when the server's
// close reached this host, not when the process read the EOF: on Linux
// the Conn reads the FIN's age from TCP_INFO (tcpi_last_ack_recv in
// CLOSE_WAIT), and a process that read it late draws from what is left of
// the window (at most a quarter of it is dated back), so the fleet's last
// dials come at the window's end and not the slowest reader's lag after
// it (Stats.NoticeLag; Reservation.LostAgo for sockets the dialer does
// not own).
//
// The rate starts from what the server tells. Read INFO now and then
// while it is healthy and pass the reply to ObserveInfo (`INFO server
// clients cpu stats`): connected_clients is the fleet, and two readings'
// CPU times say how busy the server's main thread is (ρ, leaving out what
// admitting connections cost) — until there are two, one reading's CPU
// time over uptime_in_seconds says how busy it has been since it
// started, so an instance that has just connected knows too. The first
// wave then comes at
// Options.ServerShare × (1 − ρ) / Options.ConnectCost — a sixth of
// what the idle part of the thread could admit at 17 µs a connection,
// ~10,000/s on a server 2% busy — within [AcceptRate/4, MaxAcceptRate];
// without such readings, and over TLS (a handshake costs the server ~30×
// more), it starts at Options.AcceptRate (5,000/s). An instance with one
// connection sees one episode, so this is what decides its first wave.
//
// The rate is then learned per target, AIMD. Every failed, timed-out or
// rejected connect, and every connect slow enough that its SYN was dropped and retransmitted
// (Options.SlowConnect), divides it by Options.WindowGrowth (1.5) — the
// window grows by half at once, and the retry lands at a uniform point of
// what is left of the grown window: exponential backoff with full jitter,
// starting from the window instead of from zero. The episode stays
// anchored at the loss that started it, so a client that fails is not
// sent behind everyone else; failures of dials made before the last cut
// (a pool meeting one storm) cut once, as TCP does per loss event. Every
// reconnect episode in which the
// target's connection came back fast and proved healthy (StableAfter)
// raises the rate by AcceptRate/2, up to Options.MaxAcceptRate (4 ×
// AcceptRate), so a fleet on a server that admits more dials faster at
// the next failover, and one that met congestion slows down. What was
// lost matters: an episode of timeouts alone (as likely a loaded server
// answering late as an outage) keeps ReconnectWindow until failures grow
// it or the server closes a connection. A refused connect (nothing
// listens: a restart under way) backs off like a failure, but for at
// most half of how long the target has been refusing (a 1 s outage costs
// a client at most 0.5 s after the return; a long one still reaches the
// policy's cap), and it neither cuts the rate nor counts towards the
// circuit breaker: it costs the server nothing and says it is down for
// now, not that it admits too slowly. It starts the window again
// instead, and the retry keeps the client's place in the fleet: a client refused while its episode's
// draws are still coming retries after they end, at the place its draw
// had among them, and one refused again retries one window after the
// refusal. So the fleet retries at the window's rate while the server is
// down, and once it is back the clients that were never refused come
// first, at the rate they drew, and the refused ones follow in order
// instead of adding to it, at the same learned rate as a killed fleet:
// a new process has no lost fleet to tear down, but it stalls as its
// descriptor table doubles while the fleet returns.
// A pool behaves as that many clients alone: each of its refused
// connections keeps its own retry time, and the failures of attempts in
// flight together count once for the backoff policy, as a congestion
// event cuts the rate once.
// In an episode of timeouts (or after one, until a connection proves
// healthy) a connect attempt with no SYN-ACK 800 ms after it started is
// cut, before the kernel's own SYN retransmit at 1 s, and the dial then
// fails at its DialTimeout as before: the same pace, one SYN per attempt
// instead of the kernel's two. In a network blip the kernel fires a
// fleet's retransmit timers together, so after the blip the retransmits
// arrived in batches of 100–200 SYNs on a 128-slot accept queue; with the
// cut every SYN the fleet sends is one its windows placed. Not in an
// episode begun by a close, reset or refusal, not for a path whose
// connects take too long for the cut, not through Reserve.
// Opt-in (Options.SYNDeadline, off by default): in an episode begun by
// a close or reset, a connect attempt with no SYN-ACK within a deadline
// learned from the target's connect times (about 200 ms on a LAN; a
// longer path than the cap gets none) lost its SYN on a full accept
// queue: it is abandoned and redialled at a point of what is left of the
// window, never later than the kernel's own 1 s retransmit, and counts as
// congestion. It shortens the tail of the few clients a fleet loses to
// overflows, but in the lab it kept an overload going (redials come
// sooner than TCP's own backoff), hence off by default.
//
// Share one *Dialer across every client of a process: its per-target state
// is the point. It holds no package-level state, so tests and libraries
// can make as many as they like.
//
// Waiting (backoff, first-connect jitter, rate limit) respects the dial's
// context: when the wait would outlast the context's deadline the dial
// fails at once with [ErrBackingOff] or [ErrRateLimited] instead of
// sleeping to the deadline.
//
// [Dialer.Reserve] exposes the same decisions without I/O or sleeping, on
// the Options.Now clock: `stormguard simulate` drives one Dialer per
// simulated instance through simulated time with it.
package dialer
