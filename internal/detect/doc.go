// Package detect turns the sample stream of one Valkey listener into a storm
// state (calm, surge, storm, recovering), a derived per-sample View (rates,
// occupancy, forecasts, baselines) and state-change Events with evidence.
//
// The detector is pure logic: no I/O, no clock of its own (time comes from
// Sample.Time), no goroutines. Feed it samples in order with Observe; it is
// not safe for concurrent use (one Detector per target, one goroutine).
//
// # Signals and scopes
//
// Counters in a Sample are cumulative; the detector derives per-second rates
// from consecutive values of the same counter. A counter that goes down was
// reset (Valkey restart, driver reset, counter wrap): that interval yields no
// rate rather than a huge one. A nil field is unavailable, never zero, and its
// signal is skipped.
//
// TCP counters (ListenOverflows, PassiveOpens, SYN cookies…) are per network
// namespace, not per port (Principle 0 in docs/detector.md). Every Signal therefore
// carries a Scope: "port" (this listener's accept queue or SYN_RECV),
// "instance" (this Valkey's INFO), "namespace" (shared by every listener in
// the namespace) or "nic" (the host's network interface). Namespace-wide drop
// counters make a storm only when this port shows pressure of its own, or
// when there is no per-port data to contradict them; see docs/detector.md.
//
// # Attribution
//
// Attribute aggregates remote addresses (young or half-open sockets) into the
// top sources by IP and by prefix (/24 for IPv4, /64 for IPv6). Collecting
// those addresses is the caller's job.
package detect
