package source

import (
	"context"
	"errors"
	"hash/maphash"
	"net/netip"
	"slices"
	"time"

	"github.com/stormguard/stormguard/internal/clientlist"
)

// Attribution support: the sources can answer two questions beyond the
// sample, both asked by the agent only when it needs them.
//
//   - Peers: a bounded sock_diag dump of the port's SYN_RECV and
//     ESTABLISHED sockets (kernel side, no load on Valkey), for "who opens
//     the new connections".
//   - ClientGroups: the last CLIENT LIST taken over the reserved connection,
//     grouped; it is taken only while the agent says the target is calm and
//     Valkey itself looks calm (valkey.go: clientListDue).

// PeerDump is one bounded dump of the connections on a target's port.
type PeerDump struct {
	Time  time.Time
	Peers []Peer
	// Truncated is set when the dump stopped at its limit: Peers is then
	// the first sockets of the kernel's hash walk, a sample in hash order
	// (not age order) of the whole set.
	Truncated bool
	// Took is how long the dump took.
	Took time.Duration
}

// Peers dumps up to limit sockets (SYN_RECV and ESTABLISHED) on the
// target's port, in the target's network namespace, through a sock_diag
// socket of the Set's own (so it never delays the accept-queue poller or
// Collect). It is unavailable where sock_diag is (not Linux, not permitted).
func (s *Set) Peers(ctx context.Context, limit int) (PeerDump, error) {
	if s.peers == nil {
		return PeerDump{}, &Unavailable{Reason: "socket dump: no sock_diag source for this target", Err: errors.ErrUnsupported}
	}
	return s.peers.dump(ctx, limit)
}

// SetDetectorCalm passes the agent's detector verdict for the target to
// the valkey source: heavy commands (CLIENT LIST) are sent only while it is
// calm, on top of the source's own checks. It is false until the agent sets
// it, so one-shot commands never send them.
func (s *Set) SetDetectorCalm(calm bool) {
	if s.valkey != nil {
		s.valkey.detectorCalm.Store(calm)
	}
}

// ClientGroups is the valkey source's last grouped CLIENT LIST, published
// as an immutable value each time the source takes one or is refused.
type ClientGroups struct {
	// Snapshot is the last grouped list, nil before the first.
	Snapshot *clientlist.Snapshot
	// Note says why the latest attempt was refused or not understood.
	Note string
}

// ClientGroups returns the valkey source's latest published CLIENT LIST
// groups (a zero value before the first attempt).
func (s *Set) ClientGroups() ClientGroups {
	if s.valkey == nil {
		return ClientGroups{Note: "valkey source not open"}
	}
	if g := s.valkey.groups.Load(); g != nil {
		return *g
	}
	return ClientGroups{}
}

// RoleName maps INFO replication's role to the words the API uses:
// master → primary, slave → replica (Valkey 8 still says master/slave in
// INFO). Anything else is returned as is; "" stays "".
func RoleName(role string) string {
	switch role {
	case "master":
		return "primary"
	case "slave":
		return "replica"
	}
	return role
}

// PeerTracker remembers the connections of the previous dump so the next
// one yields only what is new. It keeps 8 bytes per connection (a keyed
// hash of the 4-tuple) in a sorted slice, and reuses the slices from dump
// to dump, so tracking 20,000 connections costs ~0.3 MB, allocated once.
// Its zero value is ready to use; it is not safe for concurrent use.
type PeerTracker struct {
	seed      maphash.Seed
	seeded    bool
	prev      []uint64 // sorted hashes of the previous dump's ESTABLISHED sockets
	spare     []uint64 // the slice before that, reused for the next dump
	prevTime  time.Time
	prevOK    bool
	prevTrunc bool
}

// NewPeers is what one dump adds over the previous one.
type NewPeers struct {
	// Since is the previous dump's time: every ESTABLISHED connection
	// counted opened after it. Zero when there was no previous dump, in
	// which case only half-open (SYN_RECV) sockets are counted.
	Since time.Time
	// Addrs are the remote addresses of the new connections: every
	// SYN_RECV socket, and every ESTABLISHED socket whose 4-tuple was not
	// in the previous dump.
	Addrs []netip.Addr
	// SynRecv and Established split Addrs by state; Scanned is the dump
	// size; Approximate is set when this dump or the previous one was
	// truncated (a connection missed by the previous dump reads as new).
	SynRecv, Established, Scanned int
	Approximate                   bool
}

// Next diffs d against the previous dump and remembers d for the next call.
// A request socket (SYN_RECV) always counts: it is at most one handshake
// timeout old. An ESTABLISHED socket counts when its 4-tuple is new, so a
// request socket that completed between two dumps counts in both: once as
// an attempt, once as an admitted connection.
func (t *PeerTracker) Next(d PeerDump) NewPeers {
	if !t.seeded {
		t.seed, t.seeded = maphash.MakeSeed(), true
	}
	out := NewPeers{Scanned: len(d.Peers), Approximate: d.Truncated || t.prevTrunc}
	if t.prevOK {
		out.Since = t.prevTime
	}
	cur := t.spare[:0]
	for _, p := range d.Peers {
		if p.HalfOpen() {
			out.SynRecv++
			out.Addrs = append(out.Addrs, p.Remote.Addr())
			continue
		}
		k := maphash.Comparable(t.seed, [2]netip.AddrPort{p.Local, p.Remote})
		cur = append(cur, k)
		if !t.prevOK {
			continue
		}
		if _, old := slices.BinarySearch(t.prev, k); !old {
			out.Established++
			out.Addrs = append(out.Addrs, p.Remote.Addr())
		}
	}
	slices.Sort(cur)
	t.prev, t.spare = cur, t.prev
	t.prevTime, t.prevOK, t.prevTrunc = d.Time, true, d.Truncated
	return out
}

// Reset forgets the previous dump (the target restarted, or a dump failed
// and the next diff would span an unknown gap).
func (t *PeerTracker) Reset() { t.prev, t.prevOK = t.prev[:0], false }
