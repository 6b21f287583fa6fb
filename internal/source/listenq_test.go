package source

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
)

// diagMsg is one inet_diag_msg to encode in tests.
type diagMsg struct {
	family, state  uint8
	sport          uint16
	rqueue, wqueue uint32
	// src/dst and dport are the connection's addresses (zero for a
	// listener).
	src, dst netip.Addr
	dport    uint16
	// unowned leaves idiag_inode 0: no process owns the socket (a child
	// still in the accept queue).
	unowned bool
	// attrs is appended after the fixed part, as the kernel appends
	// INET_DIAG_SHUTDOWN, INET_DIAG_SOCKOPT and friends.
	attrs []byte
}

// encodeMsg marshals one netlink message with mdlayher/netlink, so the
// decoder is checked against an independent encoder.
func encodeMsg(t testing.TB, typ netlink.HeaderType, flags netlink.HeaderFlags, seq uint32, data []byte) []byte {
	t.Helper()
	// The kernel pads attributes, so nlmsg_len is always aligned.
	for len(data)%4 != 0 {
		data = append(data, 0)
	}
	m := netlink.Message{Header: netlink.Header{Type: typ, Flags: flags, Sequence: seq, PID: 4242}, Data: data}
	m.Header.Length = uint32(nlmsgHdrLen + len(data))
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

func diagData(m diagMsg) []byte {
	b := make([]byte, inetDiagMsgLen, inetDiagMsgLen+len(m.attrs))
	b[0], b[1] = m.family, m.state
	binary.BigEndian.PutUint16(b[4:], m.sport)
	binary.BigEndian.PutUint16(b[6:], m.dport)
	if m.src.IsValid() {
		a := m.src.As16()
		if m.src.Is4() {
			a4 := m.src.As4()
			a = [16]byte{}
			copy(a[:], a4[:])
		}
		copy(b[8:24], a[:])
	}
	if m.dst.IsValid() {
		a := m.dst.As16()
		if m.dst.Is4() {
			a4 := m.dst.As4()
			a = [16]byte{}
			copy(a[:], a4[:])
		}
		copy(b[24:40], a[:])
	}
	binary.NativeEndian.PutUint32(b[56:], m.rqueue)
	binary.NativeEndian.PutUint32(b[60:], m.wqueue)
	if !m.unowned {
		binary.NativeEndian.PutUint32(b[68:], 12345) // inode
	}
	return append(b, m.attrs...)
}

func sockMsg(t testing.TB, seq uint32, m diagMsg) []byte {
	return encodeMsg(t, sockDiagByFamily, netlink.Multi, seq, diagData(m))
}

func doneMsg(t testing.TB, seq uint32, status int32) []byte {
	return encodeMsg(t, netlink.Done, netlink.Multi, seq, binary.NativeEndian.AppendUint32(nil, uint32(status)))
}

func errorMsg(t testing.TB, seq uint32, errno int32) []byte {
	// NLMSG_ERROR: int32 error then the offending request's header.
	d := binary.NativeEndian.AppendUint32(nil, uint32(errno))
	d = append(d, appendDiagRequest(nil, afInet, statesListen, 6379, seq)[:nlmsgHdrLen]...)
	return encodeMsg(t, netlink.Error, 0, seq, d)
}

// shutdownAttr is an INET_DIAG_SHUTDOWN attribute (5 bytes, padded to 8):
// it makes the message length unaligned before padding.
var shutdownAttr = []byte{5, 0, 8, 0, 0}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func listens(n int) (s [16]int) {
	s[tcpListen] = n
	return s
}

func TestAppendDiagRequest(t *testing.T) {
	got := appendDiagRequest([]byte{0xee}, afInet6, statesSynRecv, 6379, 77)
	if len(got) != 1+diagRequestLen {
		t.Fatalf("len = %d, want %d", len(got), 1+diagRequestLen)
	}
	want := make([]byte, diagRequestLen)
	ne := binary.NativeEndian
	ne.PutUint32(want[0:], 72)
	ne.PutUint16(want[4:], 20)      // SOCK_DIAG_BY_FAMILY
	ne.PutUint16(want[6:], 0x301)   // NLM_F_REQUEST|NLM_F_DUMP
	ne.PutUint32(want[8:], 77)      // seq
	want[16], want[17] = 10, 6      // AF_INET6, IPPROTO_TCP
	ne.PutUint32(want[20:], 0x1008) // 1<<3 | 1<<12
	want[24], want[25] = 0x18, 0xeb // htons(6379)
	if !bytes.Equal(got[1:], want) {
		t.Fatalf("request\n got %x\nwant %x", got[1:], want)
	}
	if got[0] != 0xee {
		t.Fatal("appendDiagRequest overwrote the prefix")
	}
	// The library parses it as one well-formed request.
	var m netlink.Message
	if err := m.UnmarshalBinary(got[1:]); err != nil {
		t.Fatalf("mdlayher/netlink cannot parse the request: %v", err)
	}
	if m.Header.Flags != netlink.Request|netlink.Dump || len(m.Data) != inetDiagReqV2Len {
		t.Fatalf("parsed header %+v, data %d bytes", m.Header, len(m.Data))
	}
}

func TestAppendCompatRequest(t *testing.T) {
	got := appendCompatRequest([]byte{0xee}, statesSynRecv|statesEstablished, 6379, 78)
	if len(got) != 1+compatRequestLen {
		t.Fatalf("len = %d, want %d", len(got), 1+compatRequestLen)
	}
	want := make([]byte, compatRequestLen)
	ne := binary.NativeEndian
	ne.PutUint32(want[0:], 76)
	ne.PutUint16(want[4:], 18)      // TCPDIAG_GETSOCK
	ne.PutUint16(want[6:], 0x301)   // NLM_F_REQUEST|NLM_F_DUMP
	ne.PutUint32(want[8:], 78)      // seq
	want[16] = 2                    // idiag_family (ignored by the kernel)
	want[20], want[21] = 0x18, 0xeb // id.idiag_sport = htons(6379)
	ne.PutUint32(want[68:], 0x100a) // idiag_states: 1<<1 | 1<<3 | 1<<12
	if !bytes.Equal(got[1:], want) {
		t.Fatalf("request\n got %x\nwant %x", got[1:], want)
	}
	var m netlink.Message
	if err := m.UnmarshalBinary(got[1:]); err != nil {
		t.Fatalf("mdlayher/netlink cannot parse the request: %v", err)
	}
	if m.Header.Flags != netlink.Request|netlink.Dump || len(m.Data) != inetDiagReqLen {
		t.Fatalf("parsed header %+v, data %d bytes", m.Header, len(m.Data))
	}
}

func TestCountSpacing(t *testing.T) {
	tests := []struct {
		name   string
		cost   time.Duration
		budget float64
		want   time.Duration
	}{
		{"quiet host: a 0.3 ms count may run every 150 ms", 300 * time.Microsecond, 0.002, 150 * time.Millisecond},
		{"20,000 connections: a 15 ms count every 7.5 s", 15 * time.Millisecond, 0.002, 7500 * time.Millisecond},
		{"huge table: capped at the maximum age", 200 * time.Millisecond, 0.002, 30 * time.Second},
		{"no budget: count every time", 15 * time.Millisecond, 0, 0},
		{"a budget of a whole core is no budget", 15 * time.Millisecond, 1, 0},
		{"free count", 0, 0.002, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := countSpacing(tc.cost, tc.budget, 30*time.Second); got != tc.want {
				t.Fatalf("countSpacing(%v, %v) = %v, want %v", tc.cost, tc.budget, got, tc.want)
			}
		})
	}
}

func TestDecodeDiagDump(t *testing.T) {
	const seq = 9
	v4 := diagMsg{family: afInet, state: tcpListen, sport: 6379, rqueue: 3, wqueue: 64, attrs: shutdownAttr}
	v6 := diagMsg{family: afInet6, state: tcpListen, sport: 6379, rqueue: 65, wqueue: 64}
	tests := []struct {
		name     string
		b        []byte
		wantDone bool
		wantErr  error // errors.Is target; nil = no error
		want     diagTally
	}{
		{
			name:     "two sockets and done in one datagram",
			b:        cat(sockMsg(t, seq, v4), sockMsg(t, seq, v6), doneMsg(t, seq, 0)),
			wantDone: true,
			want:     diagTally{Port: 6379, Sockets: 2, DepthSum: 68, LimitSum: 128, FullDepth: 65, FullLimit: 64, States: listens(2)},
		},
		{
			name: "sockets without done: more datagrams follow",
			b:    sockMsg(t, seq, v4),
			want: diagTally{Port: 6379, Sockets: 1, DepthSum: 3, LimitSum: 64, FullDepth: 3, FullLimit: 64, States: listens(1)},
		},
		{
			name: "one dump counts SYN_RECV and ESTABLISHED apart",
			b: cat(sockMsg(t, seq, diagMsg{family: afInet, state: tcpEstablished, sport: 6379}),
				sockMsg(t, seq, diagMsg{family: afInet, state: tcpSynRecv, sport: 6379}),
				sockMsg(t, seq, diagMsg{family: afInet, state: tcpEstablished, sport: 6379, rqueue: 7, wqueue: 100}),
				sockMsg(t, seq, diagMsg{family: afInet, state: 200, sport: 6379}),
				doneMsg(t, seq, 0)),
			wantDone: true,
			want: diagTally{Port: 6379, Sockets: 4, DepthSum: 7, LimitSum: 100, FullDepth: 7, FullLimit: 100,
				States: func() (s [16]int) { s[tcpEstablished], s[tcpSynRecv] = 2, 1; return }()},
		},
		{
			name: "CLOSE_WAIT children nobody accepted yet are told from owned ones",
			b: cat(sockMsg(t, seq, diagMsg{family: afInet, state: tcpCloseWait, sport: 6379, unowned: true}),
				sockMsg(t, seq, diagMsg{family: afInet6, state: tcpCloseWait, sport: 6379, unowned: true}),
				sockMsg(t, seq, diagMsg{family: afInet, state: tcpCloseWait, sport: 6379}),
				sockMsg(t, seq, diagMsg{family: afInet, state: tcpEstablished, sport: 6379, unowned: true}),
				doneMsg(t, seq, 0)),
			wantDone: true,
			want: diagTally{Port: 6379, Sockets: 4,
				States:  func() (s [16]int) { s[tcpCloseWait], s[tcpEstablished] = 3, 1; return }(),
				Unowned: func() (s [16]int) { s[tcpCloseWait], s[tcpEstablished] = 2, 1; return }()},
		},
		{
			name: "TCPDIAG_GETSOCK replies: both families from one dump",
			b: cat(encodeMsg(t, tcpDiagGetSock, netlink.Multi, seq, diagData(diagMsg{family: afInet, state: tcpEstablished, sport: 6379})),
				encodeMsg(t, tcpDiagGetSock, netlink.Multi, seq, diagData(diagMsg{family: afInet6, state: tcpNewSynRecv, sport: 6379})),
				doneMsg(t, seq, 0)),
			wantDone: true,
			want: diagTally{Port: 6379, Sockets: 2,
				States: func() (s [16]int) { s[tcpEstablished], s[tcpNewSynRecv] = 1, 1; return }()},
		},
		{
			name:     "empty dump",
			b:        doneMsg(t, seq, 0),
			wantDone: true,
			want:     diagTally{Port: 6379},
		},
		{
			name:     "done without status (old kernels)",
			b:        encodeMsg(t, netlink.Done, netlink.Multi, seq, nil),
			wantDone: true,
			want:     diagTally{Port: 6379},
		},
		{
			name:     "stale messages of an abandoned dump are ignored",
			b:        cat(sockMsg(t, seq-1, v6), doneMsg(t, seq-1, 0), sockMsg(t, seq, v4)),
			wantDone: false,
			want:     diagTally{Port: 6379, Sockets: 1, DepthSum: 3, LimitSum: 64, FullDepth: 3, FullLimit: 64, States: listens(1)},
		},
		{
			name:     "other port is not trusted",
			b:        cat(sockMsg(t, seq, diagMsg{family: afInet, state: tcpListen, sport: 22, rqueue: 9, wqueue: 9}), doneMsg(t, seq, 0)),
			wantDone: true,
			want:     diagTally{Port: 6379, Skipped: 1},
		},
		{
			name:     "noop carries no socket",
			b:        cat(encodeMsg(t, netlink.Noop, 0, seq, nil), doneMsg(t, seq, 0)),
			wantDone: true,
			want:     diagTally{Port: 6379, Skipped: 1},
		},
		{
			name:     "interrupted dump still counts",
			b:        cat(encodeMsg(t, sockDiagByFamily, netlink.Multi|netlink.DumpInterrupted, seq, diagData(v4)), doneMsg(t, seq, 0)),
			wantDone: true,
			want:     diagTally{Port: 6379, Sockets: 1, DepthSum: 3, LimitSum: 64, FullDepth: 3, FullLimit: 64, Interrupted: true, States: listens(1)},
		},
		{
			name:     "kernel error",
			b:        errorMsg(t, seq, -int32(syscall.EPERM)),
			wantDone: true,
			wantErr:  syscall.EPERM,
			want:     diagTally{Port: 6379},
		},
		{
			name:     "error in done status",
			b:        doneMsg(t, seq, -int32(syscall.ENOBUFS)),
			wantDone: true,
			wantErr:  syscall.ENOBUFS,
			want:     diagTally{Port: 6379},
		},
		{
			name:     "ack ends the exchange",
			b:        errorMsg(t, seq, 0),
			wantDone: true,
			want:     diagTally{Port: 6379},
		},
		{
			name:    "truncated header",
			b:       sockMsg(t, seq, v4)[:10],
			wantErr: errDiagMalformed,
			want:    diagTally{Port: 6379},
		},
		{
			name:    "length beyond datagram",
			b:       sockMsg(t, seq, v4)[:40],
			wantErr: errDiagMalformed,
			want:    diagTally{Port: 6379},
		},
		{
			name:    "short inet_diag_msg",
			b:       encodeMsg(t, sockDiagByFamily, netlink.Multi, seq, make([]byte, 40)),
			wantErr: errDiagMalformed,
			want:    diagTally{Port: 6379},
		},
		{
			name:    "overrun",
			b:       encodeMsg(t, netlink.Overrun, 0, seq, nil),
			wantErr: errDiagMalformed,
			want:    diagTally{Port: 6379},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := diagTally{Port: 6379}
			done, err := decodeDiagDump(tc.b, seq, &got)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && done != tc.wantDone {
				t.Errorf("done = %v, want %v", done, tc.wantDone)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("tally\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeDiagDumpUnpaddedLast(t *testing.T) {
	// The last message of a datagram may end without its padding.
	b := sockMsg(t, 1, diagMsg{family: afInet, state: tcpListen, sport: 6379, rqueue: 1, wqueue: 2, attrs: shutdownAttr})
	b = b[:len(b)-3]
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	got := diagTally{Port: 6379}
	if _, err := decodeDiagDump(b, 1, &got); err != nil || got.Sockets != 1 {
		t.Fatalf("err = %v, tally %+v", err, got)
	}
}

func TestListenerIDRoundTrip(t *testing.T) {
	// A dumped socket's identity, sent back in an exact request, must
	// land in the request's inet_diag_sockid at the same fields.
	msg := diagData(diagMsg{family: afInet6, state: tcpListen, sport: 6379, rqueue: 1, wqueue: 511})
	copy(msg[8:24], []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}) // src ::1
	binary.NativeEndian.PutUint32(msg[40:], 3)                              // if
	copy(msg[44:52], []byte{1, 2, 3, 4, 5, 6, 7, 8})                        // cookie
	tally := diagTally{Port: 6379, KeepIDs: true}
	if _, err := decodeDiagDump(encodeMsg(t, sockDiagByFamily, netlink.Multi, 5, msg), 5, &tally); err != nil {
		t.Fatal(err)
	}
	if len(tally.IDs) != 1 {
		t.Fatalf("ids = %+v", tally.IDs)
	}
	id := tally.IDs[0]
	want := listenerID{Family: afInet6, If: 3, Cookie: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}}
	want.Src[15] = 1
	if id != want {
		t.Fatalf("id = %+v, want %+v", id, want)
	}
	req := appendExactRequest(nil, id, 6379, 42)
	ne := binary.NativeEndian
	if len(req) != diagRequestLen || ne.Uint16(req[6:]) != nlmFRequest || ne.Uint32(req[8:]) != 42 {
		t.Fatalf("exact request header %x", req[:nlmsgHdrLen])
	}
	r := req[nlmsgHdrLen:]
	switch {
	case r[0] != afInet6 || r[1] != ipprotoTCP:
		t.Errorf("family/protocol %d/%d", r[0], r[1])
	case binary.BigEndian.Uint16(r[8:]) != 6379 || binary.BigEndian.Uint16(r[10:]) != 0:
		t.Errorf("ports %x", r[8:12])
	case !bytes.Equal(r[12:28], msg[8:24]) || !bytes.Equal(r[28:44], make([]byte, 16)):
		t.Errorf("addresses src %x dst %x", r[12:28], r[28:44])
	case ne.Uint32(r[44:]) != 3 || !bytes.Equal(r[48:56], msg[44:52]):
		t.Errorf("if %d cookie %x", ne.Uint32(r[44:]), r[48:56])
	}
}

func TestUniqueIDs(t *testing.T) {
	a := listenerID{Family: afInet, Cookie: [8]byte{1}}
	b := listenerID{Family: afInet6, Cookie: [8]byte{2}}
	reuse := a
	reuse.Cookie = [8]byte{3} // same address, another socket: SO_REUSEPORT
	tests := []struct {
		ids  []listenerID
		want bool
	}{
		{nil, true},
		{[]listenerID{a}, true},
		{[]listenerID{a, b}, true},
		{[]listenerID{a, b, reuse}, false},
	}
	for i, tc := range tests {
		if got := uniqueIDs(tc.ids); got != tc.want {
			t.Errorf("case %d: uniqueIDs = %v, want %v", i, got, tc.want)
		}
	}
}

func TestFuller(t *testing.T) {
	tests := []struct {
		name           string
		da, la, db, lb uint64
		want           bool
	}{
		{"higher ratio", 30, 32, 60, 128, true},
		{"lower ratio", 60, 128, 30, 32, false},
		{"equal ratio, deeper wins", 64, 64, 32, 32, true},
		{"equal queues", 5, 64, 5, 64, false},
		{"zero limit with waiters is full", 1, 0, 64, 64, true},
		{"zero limit, empty", 0, 0, 1, 64, false},
		{"both empty", 0, 64, 0, 128, false},
		{"u32 extremes do not overflow", 1<<32 - 1, 1<<32 - 1, 1<<32 - 2, 1<<32 - 1, true},
	}
	for _, tc := range tests {
		if got := fuller(tc.da, tc.la, tc.db, tc.lb); got != tc.want {
			t.Errorf("%s: fuller(%d/%d, %d/%d) = %v, want %v", tc.name, tc.da, tc.la, tc.db, tc.lb, got, tc.want)
		}
	}
}

func TestListenPeak(t *testing.T) {
	tally := func(depths ...uint64) *diagTally {
		t := &diagTally{Port: 6379}
		for _, d := range depths {
			t.add(tcpListen, d, 64, 1)
		}
		return t
	}
	var p listenPeak
	if r := p.take(); r.Seen || r.Polls != 0 {
		t.Fatalf("fresh peak = %+v", r)
	}
	// A burst between samples: the peak is kept even though the last
	// poll saw an empty queue.
	p.observe(tally(0, 0))
	p.observe(tally(65, 0))
	p.observe(tally(12, 3))
	p.observe(tally())         // listener gone for a poll
	p.fail(errors.New("boom")) // and a failed poll
	p.observe(tally(0, 0))
	r := p.take()
	if !r.Seen || r.Depth != 65 || r.Limit != 64 || r.Polls != 5 || r.Failures != 1 || r.LastErr == nil {
		t.Fatalf("interval = %+v; want peak 65/64 over 5 polls with 1 failure", r)
	}
	if r := p.take(); r.Seen || r.Depth != 0 || r.Polls != 0 || r.Failures != 0 || r.LastErr != nil {
		t.Fatalf("after take = %+v; want a fresh interval", r)
	}
	p.observe(tally())
	if r := p.take(); r.Seen || r.Polls != 1 {
		t.Fatalf("no listener = %+v; want 1 poll, nothing seen", r)
	}
}

func FuzzDecodeDiagDump(f *testing.F) {
	v4 := diagMsg{family: afInet, state: tcpListen, sport: 6379, rqueue: 3, wqueue: 64, attrs: shutdownAttr}
	f.Add(cat(sockMsg(f, 1, v4), sockMsg(f, 1, v4), doneMsg(f, 1, 0)), uint32(1), uint16(6379))
	f.Add(doneMsg(f, 1, -5), uint32(1), uint16(6379))
	f.Add(errorMsg(f, 2, -1), uint32(2), uint16(6379))
	f.Add(sockMsg(f, 3, v4)[:50], uint32(3), uint16(6379))
	f.Add(encodeMsg(f, netlink.Noop, 0, 1, []byte{1, 2, 3}), uint32(1), uint16(0))
	f.Add([]byte{}, uint32(0), uint16(0))
	f.Add(cat(encodeMsg(f, tcpDiagGetSock, netlink.Multi, 4, diagData(v4)), doneMsg(f, 4, 0)), uint32(4), uint16(6379))
	f.Fuzz(func(t *testing.T, b []byte, seq uint32, port uint16) {
		tally := diagTally{Port: port, KeepPeers: true}
		_, err := decodeDiagDump(b, seq, &tally)
		if len(tally.Peers) != tally.Sockets {
			t.Fatalf("%d peers kept for %d sockets", len(tally.Peers), tally.Sockets)
		}
		if tally.Sockets > len(b)/(nlmsgHdrLen+inetDiagMsgLen) {
			t.Fatalf("%d sockets from %d bytes", tally.Sockets, len(b))
		}
		if tally.Sockets > 0 && (tally.FullDepth > tally.DepthSum || tally.FullLimit > tally.LimitSum) {
			t.Fatalf("fullest socket exceeds the sums: %+v", tally)
		}
		if err != nil && !errors.Is(err, errDiagMalformed) {
			var errno syscall.Errno
			if !errors.As(err, &errno) {
				t.Fatalf("error %v is neither malformed nor an errno", err)
			}
		}
	})
}
