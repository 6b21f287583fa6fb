package source

// The accept-queue ("listenq") source: sock_diag wire format and the pure
// parts (request encoding, dump decoding, per-port tallies, the interval peak)
// that build on every OS. The socket I/O lives in listenq_linux.go.
//
// Wire format (include/uapi/linux/inet_diag.h, sock_diag.h, netlink.h), all
// host byte order except the ports, which are network byte order:
//
//	nlmsghdr         len u32, type u16, flags u16, seq u32, pid u32      (16 B)
//	inet_diag_req_v2 family u8, protocol u8, ext u8, pad u8, states u32,
//	                 inet_diag_sockid                                   (56 B)
//	inet_diag_req    family u8, src_len u8, dst_len u8, ext u8,
//	                 inet_diag_sockid, states u32, dbs u32              (60 B)
//	inet_diag_sockid sport be16, dport be16, src [4]u32, dst [4]u32,
//	                 if u32, cookie [2]u32                              (48 B)
//	inet_diag_msg    family u8, state u8, timer u8, retrans u8,
//	                 inet_diag_sockid, expires u32, rqueue u32,
//	                 wqueue u32, uid u32, inode u32                     (72 B)

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// Netlink and sock_diag constants. They are fixed by the kernel ABI, so they
// are spelled out here instead of importing x/sys/unix, which keeps this file
// building (and fuzzable) on every OS.
const (
	nlmsgHdrLen       = 16
	nlmsgError        = 0x2
	nlmsgDone         = 0x3
	nlmsgOverrun      = 0x4
	nlmFRequest       = 0x1
	nlmFMulti         = 0x2
	nlmFDumpIntr      = 0x10
	nlmFDump          = 0x300 // NLM_F_ROOT|NLM_F_MATCH
	tcpDiagGetSock    = 18
	sockDiagByFamily  = 20
	inetDiagReqLen    = 60
	inetDiagReqV2Len  = 56
	inetDiagMsgLen    = 72
	diagRequestLen    = nlmsgHdrLen + inetDiagReqV2Len
	compatRequestLen  = nlmsgHdrLen + inetDiagReqLen
	ipprotoTCP        = 6
	afInet            = 2
	afInet6           = 10
	tcpEstablished    = 1
	tcpSynRecv        = 3
	tcpCloseWait      = 8
	tcpListen         = 10
	tcpNewSynRecv     = 12
	statesListen      = 1 << tcpListen
	statesSynRecv     = 1<<tcpSynRecv | 1<<tcpNewSynRecv
	statesEstablished = 1 << tcpEstablished
	statesCloseWait   = 1 << tcpCloseWait
)

// appendDiagRequest appends one SOCK_DIAG_BY_FAMILY dump request for TCP
// sockets of family in the given state mask whose local port is port. The
// kernel checks idiag_sport before anything else, and a LISTEN-only mask
// never walks the established hash: the LISTEN dump scans the buckets of the
// listening hash (16,384 on a typical host; ~30 µs) and fills only the
// listeners of the port. Any other state walks the whole established hash,
// shared by all namespaces, and costs milliseconds with many sockets.
// No extensions are requested (idiag_ext 0): depth and limit come in the
// fixed part of the reply, and every attribute left out is work the kernel
// does not do per socket.
func appendDiagRequest(b []byte, family uint8, states uint32, port uint16, seq uint32) []byte {
	var m [diagRequestLen]byte
	ne := binary.NativeEndian
	ne.PutUint32(m[0:], diagRequestLen)
	ne.PutUint16(m[4:], sockDiagByFamily)
	ne.PutUint16(m[6:], nlmFRequest|nlmFDump)
	ne.PutUint32(m[8:], seq)
	// pid 0: the kernel fills in the socket's port id.
	r := m[nlmsgHdrLen:]
	r[0] = family
	r[1] = ipprotoTCP
	ne.PutUint32(r[4:], states)
	binary.BigEndian.PutUint16(r[8:], port) // id.idiag_sport, network order
	return append(b, m[:]...)
}

// appendCompatRequest appends one TCPDIAG_GETSOCK dump request (the
// original inet_diag interface, still served for TCP) for sockets in the
// given state mask whose local port is port. The kernel answers it with
// family AF_UNSPEC: one walk of the hash tables returns IPv4 and IPv6
// sockets, where SOCK_DIAG_BY_FAMILY needs one walk per family. For the
// established hash (262,144 buckets, shared by all namespaces, every socket
// in it touched) that halves the cost of a SYN_RECV/ESTABLISHED count.
// Replies carry the request's type (18) instead of SOCK_DIAG_BY_FAMILY.
func appendCompatRequest(b []byte, states uint32, port uint16, seq uint32) []byte {
	var m [compatRequestLen]byte
	ne := binary.NativeEndian
	ne.PutUint32(m[0:], compatRequestLen)
	ne.PutUint16(m[4:], tcpDiagGetSock)
	ne.PutUint16(m[6:], nlmFRequest|nlmFDump)
	ne.PutUint32(m[8:], seq)
	r := m[nlmsgHdrLen:]
	// idiag_family is ignored: the dump always uses AF_UNSPEC.
	r[0] = afInet
	binary.BigEndian.PutUint16(r[4:], port) // id.idiag_sport, network order
	ne.PutUint32(r[52:], states)
	return append(b, m[:]...)
}

// listenerID identifies one listening socket for an exact sock_diag lookup:
// the kernel finds it through the listening hash in O(1) instead of walking
// every bucket, and the cookie makes it answer ESTALE if the address now
// belongs to another socket (the server restarted).
type listenerID struct {
	Family uint8
	Src    [16]byte // inet_diag_sockid.idiag_src as sent by the kernel
	If     uint32
	Cookie [8]byte
}

// appendExactRequest appends one non-dump SOCK_DIAG_BY_FAMILY request for
// the listening socket id on port. The kernel looks it up as if a packet
// came from (dst 0, dport 0) to (src, sport): the established lookup
// misses and the listener lookup hits.
func appendExactRequest(b []byte, id listenerID, port uint16, seq uint32) []byte {
	var m [diagRequestLen]byte
	ne := binary.NativeEndian
	ne.PutUint32(m[0:], diagRequestLen)
	ne.PutUint16(m[4:], sockDiagByFamily)
	ne.PutUint16(m[6:], nlmFRequest)
	ne.PutUint32(m[8:], seq)
	r := m[nlmsgHdrLen:]
	r[0] = id.Family
	r[1] = ipprotoTCP
	ne.PutUint32(r[4:], statesListen)
	binary.BigEndian.PutUint16(r[8:], port)
	copy(r[12:28], id.Src[:])
	ne.PutUint32(r[44:], id.If)
	copy(r[48:56], id.Cookie[:])
	return append(b, m[:]...)
}

// uniqueIDs reports whether no two listeners share family, address and
// device. SO_REUSEPORT groups do; an exact lookup reaches only one socket of
// a group, so they must be polled with a dump.
func uniqueIDs(ids []listenerID) bool {
	for i := range ids {
		for j := i + 1; j < len(ids); j++ {
			if ids[i].Family == ids[j].Family && ids[i].Src == ids[j].Src && ids[i].If == ids[j].If {
				return false
			}
		}
	}
	return true
}

// diagTally accumulates the replies of one dump without keeping any
// per-socket data, so a dump over 20,000 sockets costs no memory.
type diagTally struct {
	// Port is the local port asked for; replies for other ports are
	// counted in Skipped rather than trusted.
	Port uint16
	// Sockets counts matching sockets.
	Sockets int
	// DepthSum and LimitSum sum idiag_rqueue and idiag_wqueue.
	DepthSum, LimitSum uint64
	// FullDepth and FullLimit are the depth and limit of the fullest
	// socket (highest depth/limit), meaningful when Sockets > 0.
	FullDepth, FullLimit uint64
	// States counts matching sockets by idiag_state (request sockets
	// report TCP_SYN_RECV), so one dump can count several states.
	States [16]int
	// Unowned counts matching sockets by state that no process owns
	// (idiag_inode 0): children still in a listener's accept queue, or
	// orphans a process already closed.
	Unowned [16]int
	// Skipped counts replies for another port or that were not sockets.
	Skipped int
	// Interrupted is set when the kernel flagged the dump as
	// inconsistent (NLM_F_DUMP_INTR: the table changed while it was
	// walked); counts are then approximate.
	Interrupted bool
	// KeepIDs makes the decoder append each matching socket's identity
	// to IDs (the fast poller reuses the slice, so this allocates only
	// when the number of listeners grows).
	KeepIDs bool
	IDs     []listenerID
	// KeepPeers makes the decoder append each matching socket's
	// addresses and state to Peers, at most MaxPeers of them (0 = no
	// limit); the dump loop stops once the limit is reached. Only the
	// attribution dump sets it, never the poller or Collect.
	KeepPeers bool
	MaxPeers  int
	Peers     []Peer
}

// peersFull reports whether the attribution dump has all it may keep.
func (t *diagTally) peersFull() bool {
	return t.KeepPeers && t.MaxPeers > 0 && len(t.Peers) >= t.MaxPeers
}

// add records one socket; inode is the owning socket file's inode (0:
// none).
func (t *diagTally) add(state uint8, depth, limit uint64, inode uint32) {
	if int(state) < len(t.States) {
		t.States[state]++
		if inode == 0 {
			t.Unowned[state]++
		}
	}
	if t.Sockets == 0 || fuller(depth, limit, t.FullDepth, t.FullLimit) {
		t.FullDepth, t.FullLimit = depth, limit
	}
	t.Sockets++
	t.DepthSum += depth
	t.LimitSum += limit
}

// fuller reports whether queue a (depth da, limit la) is fuller than queue b:
// a higher depth/limit ratio, compared without division; on equal ratios the
// deeper queue wins. A zero limit counts as full as soon as anything waits.
func fuller(da, la, db, lb uint64) bool {
	// Ratios of at most 2^32 / 1 each; the products fit in uint64 since
	// both factors come from u32 fields.
	x, y := da*max(lb, 1), db*max(la, 1)
	if la == 0 && da > 0 {
		x = ^uint64(0)
	}
	if lb == 0 && db > 0 {
		y = ^uint64(0)
	}
	if x != y {
		return x > y
	}
	return da > db
}

// errDiagMalformed marks a reply that does not parse as netlink messages.
var errDiagMalformed = errors.New("malformed sock_diag reply")

// decodeDiagDump decodes one datagram of a sock_diag dump answering the
// request with sequence number seq, adding every inet_diag_msg to t. It
// reports done when the datagram carries the dump's NLMSG_DONE. Messages with
// another sequence number (left over from an abandoned dump) are ignored.
// A kernel error (NLMSG_ERROR, or a negative status in NLMSG_DONE) is returned
// as a syscall.Errno so callers can classify it.
func decodeDiagDump(b []byte, seq uint32, t *diagTally) (done bool, err error) {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return false, fmt.Errorf("%w: %d trailing bytes", errDiagMalformed, len(b))
		}
		n := int(ne.Uint32(b[0:]))
		if n < nlmsgHdrLen || n > len(b) {
			return false, fmt.Errorf("%w: message length %d with %d bytes left", errDiagMalformed, n, len(b))
		}
		typ, flags, mseq := ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:])
		body := b[nlmsgHdrLen:n]
		// Messages are padded to 4 bytes; the last one may end unpadded.
		next := (n + 3) &^ 3
		if next > len(b) {
			next = len(b)
		}
		b = b[next:]
		if mseq != seq {
			continue
		}
		if flags&nlmFDumpIntr != 0 {
			t.Interrupted = true
		}
		switch typ {
		case nlmsgDone:
			// Since Linux 4.x the DONE message carries the dump's
			// final status (0, or a negative errno).
			if len(body) >= 4 {
				if e := int32(ne.Uint32(body)); e < 0 {
					return true, syscall.Errno(-e)
				}
			}
			return true, nil
		case nlmsgError:
			if len(body) < 4 {
				return false, fmt.Errorf("%w: short NLMSG_ERROR", errDiagMalformed)
			}
			e := int32(ne.Uint32(body))
			if e == 0 {
				// An ACK ends the exchange without data.
				return true, nil
			}
			if e < 0 {
				e = -e
			}
			return true, syscall.Errno(e)
		case nlmsgOverrun:
			return false, fmt.Errorf("%w: NLMSG_OVERRUN", errDiagMalformed)
		case sockDiagByFamily, tcpDiagGetSock:
			if len(body) < inetDiagMsgLen {
				return false, fmt.Errorf("%w: inet_diag_msg of %d bytes, want %d", errDiagMalformed, len(body), inetDiagMsgLen)
			}
			sport := binary.BigEndian.Uint16(body[4:])
			if t.Port != 0 && sport != t.Port {
				t.Skipped++
				continue
			}
			t.add(body[1], uint64(ne.Uint32(body[56:])), uint64(ne.Uint32(body[60:])), ne.Uint32(body[68:]))
			if t.KeepIDs {
				id := listenerID{Family: body[0], If: ne.Uint32(body[40:])}
				copy(id.Src[:], body[8:24])
				copy(id.Cookie[:], body[44:52])
				t.IDs = append(t.IDs, id)
			}
			if t.KeepPeers && !t.peersFull() {
				t.Peers = append(t.Peers, peerOf(body))
			}
		default:
			// NLMSG_NOOP and anything unknown carry no socket.
			t.Skipped++
		}
	}
	return false, nil
}

// listenPeak holds what the fast poller saw since the last Collect. Storm
// peaks between two samples must not vanish, so the poller records the
// deepest accept queue it saw and Collect takes (and resets) it.
type listenPeak struct {
	mu       sync.Mutex
	depth    uint64 // deepest fullest-socket depth seen
	limit    uint64 // that observation's limit
	seen     bool   // at least one poll found a listening socket
	polls    uint64 // successful polls (with or without a socket)
	failures uint64 // polls that failed
	lastErr  error  // the most recent failure
	// wake is signalled (without blocking) when a poll finds the accept
	// queue at least half full: the sampler then samples at once.
	wake chan struct{}
}

// observe records one successful poll.
func (p *listenPeak) observe(t *diagTally) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.polls++
	if t.Sockets == 0 {
		return
	}
	if !p.seen || t.FullDepth > p.depth {
		p.depth, p.limit = t.FullDepth, t.FullLimit
	}
	p.seen = true
	if p.wake != nil && t.FullLimit > 0 && t.FullDepth >= 4 && 2*t.FullDepth >= t.FullLimit {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// fail records one failed poll.
func (p *listenPeak) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures++
	p.lastErr = err
}

// peakReading is the poller's account of one interval.
type peakReading struct {
	Depth, Limit uint64
	Seen         bool
	Polls        uint64
	Failures     uint64
	LastErr      error
}

// take returns the interval's reading and starts a new interval.
func (p *listenPeak) take() peakReading {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := peakReading{Depth: p.depth, Limit: p.limit, Seen: p.seen, Polls: p.polls, Failures: p.failures, LastErr: p.lastErr}
	p.depth, p.limit, p.seen, p.polls, p.failures, p.lastErr = 0, 0, false, 0, 0, nil
	return r
}

// Peer is one socket on the target's port as sock_diag reports it: the
// server side of a connection, so Remote is the client.
type Peer struct {
	// State is the kernel's TCP state: 1 ESTABLISHED, 3 SYN_RECV (request
	// sockets report SYN_RECV too).
	State  uint8
	Local  netip.AddrPort
	Remote netip.AddrPort
}

// HalfOpen reports whether the socket is a request socket (SYN received,
// handshake not completed): by definition a new connection attempt.
func (p Peer) HalfOpen() bool { return p.State == tcpSynRecv || p.State == tcpNewSynRecv }

// peerOf decodes the addresses of one inet_diag_msg (at least
// inetDiagMsgLen bytes): idiag_src at 8, idiag_dst at 24, ports at 4 and 6
// in network order. IPv4 sockets carry the address in the first 4 bytes.
func peerOf(body []byte) Peer {
	p := Peer{State: body[1]}
	sport, dport := binary.BigEndian.Uint16(body[4:]), binary.BigEndian.Uint16(body[6:])
	var src, dst netip.Addr
	if body[0] == afInet {
		src = netip.AddrFrom4([4]byte(body[8:12]))
		dst = netip.AddrFrom4([4]byte(body[24:28]))
	} else {
		src = netip.AddrFrom16([16]byte(body[8:24])).Unmap()
		dst = netip.AddrFrom16([16]byte(body[24:40])).Unmap()
	}
	p.Local, p.Remote = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return p
}

// countSpacing is how long after the start of a SYN_RECV/ESTABLISHED count
// that used cost of CPU the next one may start, so that counting uses at
// most budget (a share of one core) on average: cost/budget, but never more
// than maxAge, which bounds how old the reported counts get. A budget
// outside (0, 1) means no budget: count every time.
func countSpacing(cost time.Duration, budget float64, maxAge time.Duration) time.Duration {
	if budget <= 0 || budget >= 1 {
		return 0
	}
	return min(time.Duration(float64(cost)/budget), maxAge)
}
