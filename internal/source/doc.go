// Package source holds the sources that read storm signals for one Valkey
// listener: the accept queue and request sockets (sock_diag), the namespace's
// TCP counters (/proc/net/netstat and snmp), conntrack, NIC allowance
// counters (ethtool) and Valkey itself (INFO over one reserved connection).
//
// Each source lives in its own file with its config, an I/O fetch and a pure
// parse function, and implements sample.Source. A source that cannot read its
// signal on this host returns an error that unwraps to ErrUnavailable; the
// sampler records the reason and every other signal keeps flowing.
package source
