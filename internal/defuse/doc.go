// Package defuse applies, lists, expires and reverts reversible, time-limited
// mitigations against a TCP connection storm on one Valkey listener.
//
// # Actions
//
//   - ratelimit-syn: per-source SYN rate limit on the port (nftables dynamic
//     sets keyed on ip/ip6 saddr with a limit expression, prerouting hook at
//     priority -300, so it runs before conntrack and needs none).
//   - ratelimit-global: one SYN rate cap for the port, all sources together.
//   - notrack: conntrack bypass for the port in both directions; refused
//     when NAT or ct-state rules depend on tracking.
//   - accept-cap: CONFIG SET max-new-connections-per-cycle, original value
//     saved and restored.
//   - backlog: raise net.core.somaxconn and net.ipv4.tcp_max_syn_backlog in
//     the target namespace, originals saved and restored.
//   - kill-idle: CLIENT KILL of idle normal clients near maxclients; explicit
//     opt-in, cannot be reverted.
//
// # Safety model
//
// Every mitigation has a TTL. Kernel rules live in the nftables table
// "inet stormguard" and each one looks its port up in an "arm-<id>" set
// whose single element carries the TTL as a kernel timeout: when the element
// times out the rules stop matching, whether or not stormguard is still
// running. Rules carry a comment "stormguard:<id>". Only SYN packets
// (tcp flags & (syn|ack) == syn) are matched by the rate limits, so
// established connections are never cut.
//
// Valkey config and sysctls cannot expire in the kernel: the state file
// (default /var/lib/stormguard/defuse.json) records what to restore, and
// Apply schedules a restorer that runs without any stormguard process (a
// transient systemd timer, or a detached re-exec of the binary in its own
// session; see restore.go), recorded as Mitigation.RestoreBy. Every
// Manager call also starts with Expire, which restores what is due.
//
// Each action is an actuator (actuator.go) registered in one table; the
// Manager keeps state only.
//
// The Manager (Apply, Revert, List, Expire) is the Go API the agent uses;
// cmd/stormguard/defuse.go is a thin CLI over it.
package defuse
