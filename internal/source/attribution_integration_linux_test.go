//go:build linux

package source

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationPeersAttribution: a reference dump, then 30 connections
// from 127.0.0.2, 12 from 127.0.0.3 and 3 from 127.0.0.4 → the next dump's
// new sockets attribute 30/45 to 127.0.0.2; a limited dump stops at its limit.
func TestIntegrationPeersAttribution(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	set := Open(context.Background(), Options{Target: sbTarget(sb), ListenPoll: -1})
	t.Cleanup(func() { set.Close() })

	// Connections that exist before the reference are not new.
	sandboxtest.DialFrom(t, sb, "127.0.0.5", 20)
	var tr PeerTracker
	ctx := context.Background()
	ref, err := set.Peers(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := tr.Next(ref); len(ref.Peers) < 20 || !n.Since.IsZero() {
		t.Fatalf("reference dump: %d sockets, %+v", len(ref.Peers), n)
	}

	sandboxtest.DialFrom(t, sb, "127.0.0.2", 30)
	sandboxtest.DialFrom(t, sb, "127.0.0.3", 12)
	sandboxtest.DialFrom(t, sb, "127.0.0.4", 3)
	d, err := set.Peers(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := tr.Next(d)
	a := detect.Attribute(n.Addrs, 5)
	t.Logf("dump of %d sockets in %s: %d new (%d SYN_RECV, %d ESTABLISHED); top %+v", len(d.Peers), d.Took, a.Total, n.SynRecv, n.Established, a.TopIPs)
	if a.Total != 45 || n.Approximate {
		t.Fatalf("new connections: %d (approximate %v), want 45", a.Total, n.Approximate)
	}
	want := []struct {
		ip    string
		count int
	}{{"127.0.0.2", 30}, {"127.0.0.3", 12}, {"127.0.0.4", 3}}
	for i, w := range want {
		got := a.TopIPs[i]
		if got.IP != w.ip || got.Count != w.count || got.Share != float64(w.count)/45 {
			t.Errorf("top IP %d = %+v, want %s with %d (%.3f)", i, got, w.ip, w.count, float64(w.count)/45)
		}
	}
	if a.TopPrefixes[0].Prefix != "127.0.0.0/24" || a.TopPrefixes[0].Count != 45 {
		t.Errorf("top prefix %+v", a.TopPrefixes[0])
	}
	for _, p := range d.Peers {
		if p.Local.Port() != uint16(sb.Port) {
			t.Fatalf("peer on another port: %v", p)
		}
	}

	// Bounded: a dump with a limit stops there and says so; the next
	// unlimited dump works (the abandoned socket was replaced).
	lim, err := set.Peers(ctx, 10)
	if err != nil || len(lim.Peers) != 10 || !lim.Truncated {
		t.Fatalf("limited dump: %d peers, truncated %v, err %v", len(lim.Peers), lim.Truncated, err)
	}
	again, err := set.Peers(ctx, 0)
	if err != nil || again.Truncated || len(again.Peers) != len(d.Peers) {
		t.Fatalf("dump after a truncated one: %d peers (want %d), truncated %v, err %v", len(again.Peers), len(d.Peers), again.Truncated, err)
	}
}

// setinfoClients opens n raw connections that send CLIENT SETINFO
// lib-name/lib-ver, as a client library does, and keeps them open.
func setinfoClients(t *testing.T, sb *sandbox.Sandbox, src, lib, ver string, n int) {
	t.Helper()
	for _, c := range sandboxtest.DialFrom(t, sb, src, n) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "CLIENT SETINFO LIB-NAME %s\r\nCLIENT SETINFO LIB-VER %s\r\n", lib, ver)
		r := bufio.NewReader(c)
		for range 2 {
			line, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "+OK") {
				t.Fatalf("CLIENT SETINFO: %q %v", line, err)
			}
		}
		c.SetDeadline(time.Time{})
	}
}

// clientListCalls reads how often CLIENT LIST ran (INFO commandstats),
// over valkey-cli's own connection.
func clientListCalls(t *testing.T, sb *sandbox.Sandbox) int {
	t.Helper()
	m := regexp.MustCompile(`cmdstat_client\|list:calls=(\d+)`).FindStringSubmatch(cli(t, sb, "INFO", "commandstats"))
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestIntegrationClientGroups: CLIENT LIST over the reserved connection,
// only when allowed and at most once per ClientListEvery; groups by library
// and IP; stormguard's own connection is left out.
func TestIntegrationClientGroups(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	setinfoClients(t, sb, "127.0.0.2", "alpha-py", "6.1.0", 6)
	setinfoClients(t, sb, "127.0.0.3", "beta-go", "1.0.79", 3)

	cfg := defaultValkeyConfig()
	cfg.ClientListEvery = time.Hour
	s := openTest(t, sbTarget(sb), cfg)
	set := &Set{Sources: []sample.Source{s}, valkey: s}
	before := clientListCalls(t, sb)
	for range 3 {
		mustCollect(t, s, 5*time.Second)
	}
	if snap := set.ClientGroups().Snapshot; snap != nil {
		t.Fatal("CLIENT LIST taken although the agent never allowed it")
	}
	set.SetDetectorCalm(true)
	for range 3 {
		mustCollect(t, s, 5*time.Second)
	}
	if got := clientListCalls(t, sb) - before; got != 1 {
		t.Fatalf("CLIENT LIST ran %d times in 3 allowed collects, want 1 (once per %s)", got, cfg.ClientListEvery)
	}
	g := set.ClientGroups()
	snap := g.Snapshot
	if snap == nil {
		t.Fatalf("no client groups (note %q)", g.Note)
	}
	raw, _ := json.Marshal(snap)
	t.Logf("groups: %s", raw)
	// 9 test clients plus valkey-cli's (unset); stormguard's own is left out.
	if snap.Clients < 9 || len(snap.Libraries) < 2 {
		t.Fatalf("snapshot: %+v", snap)
	}
	if l := snap.Libraries[0]; l.Library != "alpha-py 6.1.0" || l.Count != 6 || l.Young != 6 {
		t.Errorf("largest library %+v, want alpha-py 6.1.0 ×6, all young", l)
	}
	if l := snap.Libraries[1]; l.Library != "beta-go 1.0.79" || l.Count != 3 {
		t.Errorf("second library %+v, want beta-go 1.0.79 ×3", l)
	}
	if ip := snap.IPs[0]; ip.IP != "127.0.0.2" || ip.Count != 6 {
		t.Errorf("largest IP %+v, want 127.0.0.2 ×6", ip)
	}
	for _, g := range snap.Libraries {
		if strings.HasPrefix(g.Library, clientName) {
			t.Errorf("stormguard's own connection was grouped: %+v", g)
		}
	}
	// An ACL without +client|list: refused once, remembered, explained.
	cli(t, sb, "ACL", "SETUSER", "mon", "on", ">s3cret-mon", "-@all", "+ping", "+info", "+hello", "+config|get", "+client|setname", "+client|setinfo")
	tg := sbTarget(sb)
	tg.Addr.User, tg.Addr.Password = "mon", "s3cret-mon"
	s3 := openTest(t, tg, cfg)
	set3 := &Set{Sources: []sample.Source{s3}, valkey: s3}
	set3.SetDetectorCalm(true)
	for range 2 {
		mustCollect(t, s3, 5*time.Second)
	}
	if g := set3.ClientGroups(); g.Snapshot != nil || !strings.Contains(g.Note, "NOPERM") {
		t.Errorf("CLIENT LIST without permission: snapshot %v, note %q", g.Snapshot, g.Note)
	}

	// Too many clients for the rule: never sent.
	cfg2 := defaultValkeyConfig()
	cfg2.ClientListMaxClients = 5
	s2 := openTest(t, sbTarget(sb), cfg2)
	s2.detectorCalm.Store(true)
	before = clientListCalls(t, sb)
	mustCollect(t, s2, 5*time.Second)
	if got := clientListCalls(t, sb) - before; got != 0 {
		t.Errorf("CLIENT LIST sent with more than %d clients (%d calls)", cfg2.ClientListMaxClients, got)
	}
}

// TestIntegrationRoles: a plain Valkey is a primary, one started with
// --replicaof is a replica, and one with cluster mode reports its node id.
func TestIntegrationRoles(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	bin, err := sandbox.ValkeyBinary()
	if err != nil {
		t.Fatal(err)
	}
	start := func(port int, extra ...string) {
		ctx, cancel := context.WithCancel(context.Background())
		args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--protected-mode", "no", "--dir", t.TempDir(), "--logfile", ""}, extra...)
		cmd := sb.Command(ctx, bin, args...)
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); cmd.Wait() })
	}
	start(sb.Port+1, "--replicaof", "127.0.0.1", strconv.Itoa(sb.Port))
	defer func() {
		// The replica's link to the primary is not an application
		// client: CLIENT LIST groups on the primary leave it out.
		cfg := defaultValkeyConfig()
		s := openTest(t, sbTarget(sb), cfg)
		s.detectorCalm.Store(true)
		deadline := time.Now().Add(10 * time.Second)
		for {
			mustCollect(t, s, 5*time.Second)
			links := 0
			for _, e := range clientList(t, sb, "") {
				if strings.Contains(e["flags"], "S") {
					links++
				}
			}
			snap := (&Set{Sources: []sample.Source{s}, valkey: s}).ClientGroups().Snapshot
			if links == 1 && snap != nil {
				if snap.Clients != 0 {
					t.Errorf("replication link grouped as a client: %+v", snap)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica never connected (links %d) or no CLIENT LIST taken", links)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	start(sb.Port+2, "--cluster-enabled", "yes", "--cluster-config-file", "nodes-test.conf")

	at := func(port int) Target {
		tg := sbTarget(sb)
		tg.Addr.Port = port
		return tg
	}
	tests := []struct {
		name    string
		port    int
		role    string
		cluster bool
	}{
		{"primary", sb.Port, "primary", false},
		{"replica", sb.Port + 1, "replica", false},
		{"cluster node", sb.Port + 2, "primary", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, at(tt.port), defaultValkeyConfig())
			v := mustCollect(t, s, 10*time.Second)
			if got := RoleName(v.Role); got != tt.role {
				t.Errorf("role %q → %q, want %q", v.Role, got, tt.role)
			}
			if tt.cluster != (len(v.ClusterNodeID) == 40) {
				t.Errorf("cluster_node_id %q (cluster mode %v)", v.ClusterNodeID, tt.cluster)
			}
			if tt.cluster {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				out, err := sb.Command(ctx, "valkey-cli", "-p", strconv.Itoa(tt.port), "CLUSTER", "MYID").Output()
				if err != nil || strings.TrimSpace(string(out)) != v.ClusterNodeID {
					t.Errorf("CLUSTER MYID says %q (%v), the sample %q", out, err, v.ClusterNodeID)
				}
			}
		})
	}
}
