// Package checklist is the connection-storm checklist as executable rules:
// the host's (or the target network namespace's) TCP sysctls, conntrack,
// Valkey's configuration and counters, the Valkey process's file-descriptor
// limit, cloud NIC allowance counters and client hygiene.
//
// The package has two halves kept strictly apart:
//
//   - Gather does the I/O once and fills a Facts value: sysctls and TCP
//     counters read inside the target network namespace, conntrack count and
//     max, one short-lived Valkey connection (CONFIG GET, INFO and, only
//     when it is safe, CLIENT LIST), /proc/PID/limits of the Valkey process
//     and NIC ethtool counters. Anything it cannot read is recorded with the
//     reason in Facts, never fatal.
//   - Rules are pure functions of Facts, one file per area (kernel.go,
//     conntrack.go, valkey.go, history.go, nic.go, clients.go). Each returns
//     findings with a stable id, a severity, the evidence (actual values)
//     and the exact fix. Unit tests build Facts by hand.
//
// Finding ids are part of the command-line contract (docs/contract.md) and each has
// a section in docs/checklist.md whose anchor is the id.
package checklist
