// Package simulate predicts a connection storm without running it: the
// engine behind `stormguard simulate`.
//
// It is a discrete-event simulation in simulated time. Each client is an
// independent application instance that runs the real reconnect code of
// its strategy — a backoff.Schedule of the policy the storm lab gives the
// strategy, or, for stormguard, its own dialer.Dialer driven through
// Dialer.Reserve with the simulated clock as Options.Now — and the lab's
// client loop around it (PING every Period, connect and command timeouts,
// redial at once after losing a proven connection). The server side is a
// model of the kernel on the Valkey host (the accept queue, the SYN queue
// with or without syncookies, SYN and SYN-ACK retransmit schedules, the
// silently dropped final ACK or a reset with tcp_abort_on_overflow, the
// client's data retransmits that retry the dropped ACK, and, with
// clients on the same loopback, the backlog that drops a timer tick's
// retransmits beyond net.core.netdev_max_backlog) and of
// Valkey's event loop (at most max-new-connections-per-cycle accepts per
// turn, a cost per turn, per accepted connection, per TLS handshake and
// per command of the clients already back).
//
// With a load generator's costs (the lab: the whole fleet is one
// process on Valkey's machine) every client's reaction — noticing a
// close, a connect(), a SYN retransmit's handshake, writing the first
// PING and reading its answer — waits in one queue of that CPU.
//
// Calibrate fits the costs, and the client side's connect-rate ceiling,
// to a `stormguard storm --json` result, so that a lab run at one fleet
// size predicts others; it counts the model's connects on each lab run's
// own 100 ms bucket grid (Fleet.BucketPhase). The steady state before the disruption is not
// simulated: every client starts connected, and notices the disruption as
// the lab's clients do (a close when it arrives, a blip at its next PING's
// timeout). Advise ranks candidate settings for one fleet and server.
package simulate
