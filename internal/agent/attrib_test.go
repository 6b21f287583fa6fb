package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/clientlist"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
)

// fakePeers serves scripted dumps and counts calls.
type fakePeers struct {
	peers []source.Peer
	err   error
	calls int
}

func (f *fakePeers) Peers(_ context.Context, limit int) (source.PeerDump, error) {
	f.calls++
	if f.err != nil {
		return source.PeerDump{}, f.err
	}
	return source.PeerDump{Peers: append([]source.Peer(nil), f.peers...)}, nil
}

func conns(ip string, from, n int) []source.Peer {
	var out []source.Peer
	for i := range n {
		out = append(out, source.Peer{State: 1, Local: netip.MustParseAddrPort("10.0.0.1:6379"),
			Remote: netip.MustParseAddrPort(fmt.Sprintf("%s:%d", ip, from+i))})
	}
	return out
}

func TestAttributor(t *testing.T) {
	f := &fakePeers{peers: conns("10.0.9.1", 1000, 50)} // the calm pool
	a := newAttributor(f, 500*time.Millisecond, slog.New(slog.DiscardHandler))
	// Outside calm a step waits for its dump: without a bound here, so
	// the outcome never depends on how fast the goroutine is scheduled.
	a.wait = time.Hour
	ctx := context.Background()
	t0 := time.Now()

	// Calm: a reference dump in the background (never waited for), then
	// none until refEvery has passed.
	if a.step(ctx, detect.Calm, t0) {
		t.Fatal("a calm step made a report")
	}
	a.close()
	if f.calls != 1 || a.current(t0) != nil {
		t.Fatalf("first calm step: calls %d report %v", f.calls, a.current(t0))
	}
	a.step(ctx, detect.Calm, t0.Add(time.Second))
	a.close()
	if f.calls != 1 {
		t.Fatalf("calm dumps must wait %s: %d calls", attribRefEvery, f.calls)
	}

	// Surge 2 s later: 30 new connections from 10.0.3.7, 10 from
	// 10.0.4.2; leaving calm dumps at once although the gap is not over.
	f.peers = append(f.peers, conns("10.0.3.7", 2000, 30)...)
	f.peers = append(f.peers, conns("10.0.4.2", 3000, 10)...)
	if !a.step(ctx, detect.Surge, t0.Add(2*time.Second)) {
		t.Fatal("leaving calm did not dump")
	}
	r := a.fresh(t0.Add(2 * time.Second))
	if r == nil || r.Basis != "new_sockets" || r.Total != 40 || r.NewEstablished != 40 || r.Scanned != 90 || r.Since == nil {
		t.Fatalf("report: %+v", r)
	}
	if top := r.TopIPs[0]; top.IP != "10.0.3.7" || top.Count != 30 || top.Share != 0.75 || top.Prefix != "10.0.3.0/24" {
		t.Errorf("top source %+v, want 10.0.3.7 with 30 (75%%)", top)
	}

	// Within the gap: no dump. After it: a dump with only what is new.
	if a.step(ctx, detect.Storm, t0.Add(2200*time.Millisecond)) || f.calls != 2 {
		t.Fatalf("dumped within the %s gap (%d calls)", a.minGap, f.calls)
	}
	f.peers = append(f.peers, conns("10.0.5.5", 4000, 5)...)
	if !a.step(ctx, detect.Storm, t0.Add(3*time.Second)) {
		t.Fatal("no dump after the gap")
	}
	if r := a.current(t0.Add(3 * time.Second)); r.Total != 5 || r.TopIPs[0].IP != "10.0.5.5" {
		t.Errorf("second storm report: %+v", r)
	}

	// A dump with nothing new keeps this episode's sources on display.
	if a.step(ctx, detect.Storm, t0.Add(3600*time.Millisecond)) {
		t.Error("an empty dump replaced the episode's sources")
	}
	if r := a.current(t0.Add(3600 * time.Millisecond)); r.Total != 5 || r.AgeS < 0.5 {
		t.Errorf("kept report: %+v", r)
	}

	// A failed dump forgets the reference: the next one counts only
	// half-open sockets (here a new SYN_RECV from 10.0.7.7).
	f.err = errors.New("boom")
	a.step(ctx, detect.Storm, t0.Add(4200*time.Millisecond))
	if f.calls != 5 {
		t.Fatalf("%d dumps, want 5", f.calls)
	}
	f.err = nil
	f.peers = append(f.peers, source.Peer{State: 12, Local: netip.MustParseAddrPort("10.0.0.1:6379"), Remote: netip.MustParseAddrPort("10.0.7.7:1")})
	a.step(ctx, detect.Storm, t0.Add(5*time.Second))
	if r := a.current(t0.Add(5 * time.Second)); r.Basis != "syn_recv_only" || r.Total != 1 || r.SynRecv != 1 || r.Since != nil {
		t.Errorf("after a failure: %+v", r)
	}

	// A new episode: an empty dump is shown (the old episode's sources
	// are not this episode's).
	f.peers = f.peers[:len(f.peers)-1]
	a.step(ctx, detect.Calm, t0.Add(20*time.Second))
	a.close()
	a.step(ctx, detect.Calm, t0.Add(51*time.Second))
	a.close()
	a.step(ctx, detect.Surge, t0.Add(52*time.Second))
	if r := a.current(t0.Add(52 * time.Second)); r.Total != 0 || !r.Time.Equal(t0.Add(52*time.Second)) {
		t.Errorf("new episode with nothing new: %+v", r)
	}
	// An old report is not fresh for an event.
	if a.fresh(t0.Add(80*time.Second)) != nil {
		t.Error("a 28 s old report was offered as fresh")
	}
	if got := a.current(t0.Add(80 * time.Second)).AgeS; got != 28 {
		t.Errorf("age %v, want 28 s", got)
	}
}

func TestSourcesSentence(t *testing.T) {
	addrs := []netip.Addr{}
	for range 6 {
		addrs = append(addrs, netip.MustParseAddr("10.0.3.7"))
	}
	for range 3 {
		addrs = append(addrs, netip.MustParseAddr("10.0.3.8"))
	}
	addrs = append(addrs, netip.MustParseAddr("10.9.0.1"))
	src := &detect.SourceAttribution{Attribution: detect.Attribute(addrs, 5)}
	snap := clientlist.GroupClients([]clientlist.Client{
		{IP: netip.MustParseAddr("10.0.3.7"), LibName: "valkey-py", LibVer: "6.1", Age: 100},
	}, time.Now(), 10*time.Second, 10)
	unset := clientlist.GroupClients([]clientlist.Client{{IP: netip.MustParseAddr("10.0.3.7"), Age: 100}}, time.Now(), 10*time.Second, 10)
	tests := []struct {
		name   string
		src    *detect.SourceAttribution
		groups *serve.ClientGroups
		want   string
	}{
		{"with library", src, &serve.ClientGroups{Snapshot: &snap}, "New connections: 90% from 10.0.3.0/24 (top IP 10.0.3.7, 60%; at the last calm CLIENT LIST 1 of its 1 clients were valkey-py 6.1)."},
		{"unset library", src, &serve.ClientGroups{Snapshot: &unset}, "New connections: 90% from 10.0.3.0/24 (top IP 10.0.3.7, 60%; at the last calm CLIENT LIST 1 of its 1 clients had sent no CLIENT SETINFO)."},
		{"no client groups", src, nil, "New connections: 90% from 10.0.3.0/24 (top IP 10.0.3.7, 60%)."},
		{"note only", src, &serve.ClientGroups{Note: "refused"}, "New connections: 90% from 10.0.3.0/24 (top IP 10.0.3.7, 60%)."},
		{"nothing new", &detect.SourceAttribution{Attribution: detect.Attribute(nil, 5)}, nil, ""},
		{"no attribution", nil, nil, ""},
	}
	for _, tt := range tests {
		if got := sourcesSentence(tt.src, tt.groups); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	if got := appendSentence("Storm.", ""); got != "Storm." {
		t.Errorf("appendSentence with nothing: %q", got)
	}
	if got := appendSentence("Storm.", "X."); got != "Storm. X." {
		t.Errorf("appendSentence: %q", got)
	}
}

// blockingPeers is fakePeers whose dumps wait for release: a dump slower
// than any sample's deadline.
type blockingPeers struct {
	fakePeers
	release chan struct{}
}

func (b *blockingPeers) Peers(ctx context.Context, limit int) (source.PeerDump, error) {
	<-b.release
	return b.fakePeers.Peers(ctx, limit)
}

// A dump slower than the interval is neither waited for in calm nor
// abandoned: the calm reference lands whenever the dump ends, and a slow
// dump outside calm shows its report from a later sample.
func TestAttributorSlowDump(t *testing.T) {
	f := &blockingPeers{fakePeers: fakePeers{peers: conns("10.0.9.1", 1000, 50)}, release: make(chan struct{})}
	a := newAttributor(f, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	a.wait = 0 // no step waits for its dump
	ctx := context.Background()
	t0 := time.Now()

	// The calm reference blocks; the step returns regardless (this
	// goroutine holds release, so a step that waited would never end).
	a.step(ctx, detect.Calm, t0)
	// Later samples do not start a second dump while it runs.
	a.step(ctx, detect.Calm, t0.Add(20*time.Second))
	f.release <- struct{}{}
	a.close()
	if f.calls != 1 {
		t.Fatalf("%d dumps, want 1", f.calls)
	}

	// Leaving calm: the surge dump is slow too; the step does not get its
	// report, the sample after the dump ends does, diffed against the
	// reference (new_sockets, only the 20 new connections).
	f.peers = append(f.peers, conns("10.0.3.7", 2000, 20)...)
	if a.step(ctx, detect.Surge, t0.Add(21*time.Second)) {
		t.Fatal("a step that did not wait reported a new report")
	}
	f.release <- struct{}{}
	a.close()
	r := a.current(t0.Add(21 * time.Second))
	if r == nil || r.Basis != "new_sockets" || r.Total != 20 || r.Scanned != 70 || r.Truncated {
		t.Fatalf("report after a slow surge dump: %+v", r)
	}
}
