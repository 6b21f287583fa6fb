// Package procnet reads the kernel's network files of a network namespace:
// /proc/net/netstat and snmp (TCP counters), the TCP sockets in LISTEN
// state (/proc/net/tcp, tcp6) and net.* sysctls (/proc/sys). Every package
// that needs them (the agent's sources, check, defuse, discovery, the lab)
// reads them here.
//
// The namespace rule: /proc/thread-self/net/* and /proc/sys/net/* show the
// namespace of the thread that opens them, and stay bound to it once open.
// So a file of another namespace is opened on a thread inside it
// (netns.Do) and read afterwards from any goroutine (Files, for the
// sampling hot path, opens once and re-reads with pread); one-shot readers
// (ReadFile, ReadSysctl, Listeners) open, read and close inside netns.Do.
//
// github.com/prometheus/procfs parses the socket tables (Listeners). The
// netstat/snmp parser stays ours (ParseStats): procfs's parsers for those
// files are unexported and only reachable through paths it opens itself,
// which cannot follow the open-once-inside-the-namespace rule of the
// sampling path, and it keeps a fixed set of counters as float64 where we
// keep every counter by name as an exact uint64.
package procnet
