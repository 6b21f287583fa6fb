// Package lab replays a connection storm against a real Valkey and measures
// it: the engine behind `stormguard storm`.
//
// A run starts N simulated clients (each an independent application
// instance with its own dial and backoff state, or K instances sharing one
// dialer each), brings them all up at a bounded rate, lets them PING every
// Period, then disrupts the server with a scenario:
//
//   - kill: CLIENT KILL TYPE normal SKIPME yes over a separate admin
//     connection that is not one of the clients;
//   - restart: the caller's Restart hook (a lab-owned valkey-server in a
//     sandbox, or a --restart-cmd);
//   - blip: an nftables rule in the server's network namespace drops every
//     packet to the port for Config.Blip, then is removed;
//   - churn: no disruption; every client reconnects after every PING, like
//     valkey-benchmark -k 0 (used to measure the generator's own rate).
//
// Each client then reconnects according to its strategy, and the run
// records every network dial (connect attempt), failed dials, failed
// commands, a per-100ms dial timeline, the time until 99% of clients have
// completed a PING started after the disruption, the namespace's TcpExt
// ListenOverflows delta and Valkey's rejected_connections and
// total_connections_received deltas.
//
// # Layout
//
// A strategy (strategy.go: the lab's own clients, one per backoff policy
// name through backoff.ByName, plus stormguard and pool-unbounded;
// libs.go: go-redis and valkey-go; glide.go: valkey-glide) and a scenario
// (scenario.go) are small interfaces registered by name from init
// functions, database/sql.Register style: a new one is one type in one
// file. Run (run.go) drives the phases — prepare (Spawn: the run's own
// server, spawn.go), launch, warm-up, hold, baseline, disrupt, observe,
// measure. Config.Validate reports a *ConfigError naming Config fields;
// callers render them in their own terms (the CLI names its flags).
//
// # Network namespaces
//
// When Config.NetNS is set every socket (clients, admin connection) is
// created inside that namespace. Creating a socket through setns per dial
// costs two setns calls and a thread handoff, and dialing inside the
// namespace would pin an OS thread for the whole (possibly second-long)
// connect. Instead one OS thread is locked into the namespace for the whole
// run and only creates sockets (socket(2) is what binds a socket to a
// namespace); the non-blocking connect and all I/O then run on ordinary
// goroutines through Go's poller. See socketFactory.
//
// # valkey-glide
//
// The valkey-glide strategy runs GLIDE's Go client, which links GLIDE's
// Rust core through cgo; it is built only with the glide build tag (make
// build-glide), see valkeyglide.go and GLIDEBuiltIn. The Rust core dials by
// itself on a runtime thread each client starts, so the lab creates each
// client on a thread inside the namespace (the runtime thread inherits it;
// with client hosts, the instance's host) and counts its connects from the
// kernel: the namespace's Tcp ActiveOpens and AttemptFails (kernelDials),
// which is why the strategy needs a namespace. Result.ConnectsSource says
// which way a run was counted. With TLS GLIDE verifies the server against
// the run's CA (its root certificates); in the failover scenario the lab
// moves the service address in the kernel for it (redirectService), and
// with Cluster it is GLIDE's ClusterClient.
package lab
