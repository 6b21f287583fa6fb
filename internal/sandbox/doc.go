// Package sandbox builds throwaway storm labs: a fresh network namespace with
// loopback up, per-namespace sysctls (a tiny somaxconn, syncookies off, …)
// and a real valkey-server running inside it. Integration tests, `make demo`
// and `stormguard storm --spawn` all use it, so a storm is reproducible on
// any Linux machine without touching the host's own network.
//
// AddHosts adds client hosts: namespaces joined to the sandbox's by veth
// pairs on a bridge, with private addresses in 10.77.0.0/16 that exist only
// inside those namespaces and no default route.
//
// Blackhole drops every TCP packet to a namespace's port (an nftables
// rule on the input hook, which sees loopback too): the lab's blip and
// the dialer's blip tests.
//
// Everything a Sandbox creates is removed by Close: the valkey-server
// process group, the namespace and the scratch directory. Namespaces are
// named sg-<pid>-<n>, so New also removes leftovers of processes that died
// without cleaning up.
//
// Creating namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
package sandbox
