package source

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestDecodePeers(t *testing.T) {
	v4 := diagMsg{family: afInet, state: tcpEstablished, sport: 6379,
		src: netip.MustParseAddr("10.0.0.1"), dst: netip.MustParseAddr("10.0.3.7"), dport: 40000}
	v6 := diagMsg{family: afInet6, state: tcpNewSynRecv, sport: 6379,
		src: netip.MustParseAddr("2001:db8::1"), dst: netip.MustParseAddr("2001:db8::7"), dport: 40001}
	mapped := diagMsg{family: afInet6, state: tcpSynRecv, sport: 6379,
		src: netip.MustParseAddr("::ffff:10.0.0.1"), dst: netip.MustParseAddr("::ffff:10.0.3.8"), dport: 40002}
	other := v4
	other.sport = 6380
	b := cat(sockMsg(t, 7, v4), sockMsg(t, 7, v6), sockMsg(t, 7, mapped), sockMsg(t, 7, other), doneMsg(t, 7, 0))

	tally := diagTally{Port: 6379, KeepPeers: true}
	done, err := decodeDiagDump(b, 7, &tally)
	if err != nil || !done {
		t.Fatalf("decode: done %v err %v", done, err)
	}
	want := []Peer{
		{State: tcpEstablished, Local: netip.MustParseAddrPort("10.0.0.1:6379"), Remote: netip.MustParseAddrPort("10.0.3.7:40000")},
		{State: tcpNewSynRecv, Local: netip.MustParseAddrPort("[2001:db8::1]:6379"), Remote: netip.MustParseAddrPort("[2001:db8::7]:40001")},
		{State: tcpSynRecv, Local: netip.MustParseAddrPort("10.0.0.1:6379"), Remote: netip.MustParseAddrPort("10.0.3.8:40002")},
	}
	if !slices.Equal(tally.Peers, want) {
		t.Fatalf("peers:\n got %v\nwant %v", tally.Peers, want)
	}
	if tally.Peers[0].HalfOpen() || !tally.Peers[1].HalfOpen() || !tally.Peers[2].HalfOpen() {
		t.Error("HalfOpen wrong")
	}

	// The limit keeps at most MaxPeers and reports full.
	lim := diagTally{Port: 6379, KeepPeers: true, MaxPeers: 2}
	if _, err := decodeDiagDump(b, 7, &lim); err != nil {
		t.Fatal(err)
	}
	if len(lim.Peers) != 2 || !lim.peersFull() {
		t.Errorf("limited dump kept %d peers, full %v", len(lim.Peers), lim.peersFull())
	}
	// Without KeepPeers nothing is kept (the poller's path).
	plain := diagTally{Port: 6379}
	if _, err := decodeDiagDump(b, 7, &plain); err != nil || plain.Peers != nil || plain.Sockets != 3 {
		t.Errorf("plain tally kept peers %v, sockets %d, err %v", plain.Peers, plain.Sockets, err)
	}
}

func est(remote string) Peer {
	return Peer{State: tcpEstablished, Local: netip.MustParseAddrPort("10.0.0.1:6379"), Remote: netip.MustParseAddrPort(remote)}
}

func syn(remote string) Peer {
	p := est(remote)
	p.State = tcpNewSynRecv
	return p
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestPeerTracker(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		dump    PeerDump
		want    []netip.Addr
		syn     int
		est     int
		since   time.Time
		approx  bool
		scanned int
	}{
		{"first dump: only half-open sockets count",
			PeerDump{Time: t0, Peers: []Peer{est("10.0.3.1:1"), est("10.0.3.1:2"), syn("10.0.4.1:1")}},
			addrs("10.0.4.1"), 1, 0, time.Time{}, false, 3},
		{"second dump: new tuples and the completed handshake",
			PeerDump{Time: t0.Add(time.Second), Peers: []Peer{est("10.0.3.1:1"), est("10.0.3.1:2"), est("10.0.4.1:1"), est("10.0.5.9:7")}},
			addrs("10.0.4.1", "10.0.5.9"), 0, 2, t0, false, 4},
		{"closed connections are not new; a reused port from a new IP is",
			PeerDump{Time: t0.Add(2 * time.Second), Peers: []Peer{est("10.0.3.1:1"), est("10.0.6.1:2")}, Truncated: true},
			addrs("10.0.6.1"), 0, 1, t0.Add(time.Second), true, 2},
		{"after a truncated dump the diff is approximate",
			PeerDump{Time: t0.Add(3 * time.Second), Peers: []Peer{est("10.0.3.1:1"), est("10.0.6.1:2")}},
			nil, 0, 0, t0.Add(2 * time.Second), true, 2},
	}
	var tr PeerTracker
	for _, tt := range tests {
		got := tr.Next(tt.dump)
		if !slices.Equal(got.Addrs, tt.want) || got.SynRecv != tt.syn || got.Established != tt.est ||
			!got.Since.Equal(tt.since) || got.Approximate != tt.approx || got.Scanned != tt.scanned {
			t.Errorf("%s: got %+v", tt.name, got)
		}
	}
	tr.Reset()
	got := tr.Next(PeerDump{Time: t0, Peers: []Peer{est("10.9.9.9:1")}})
	if len(got.Addrs) != 0 || !got.Since.IsZero() {
		t.Errorf("after Reset the first dump is a reference again: %+v", got)
	}
}

func TestRoleName(t *testing.T) {
	for in, want := range map[string]string{"master": "primary", "slave": "replica", "": "", "sentinel": "sentinel"} {
		if got := RoleName(in); got != want {
			t.Errorf("RoleName(%q) = %q, want %q", in, got, want)
		}
	}
}
