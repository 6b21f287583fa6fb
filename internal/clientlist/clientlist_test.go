package clientlist

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A reply as valkey-server 8.0.1 sends it (two lines shortened only in the
// tot-net fields).
const sample8 = "id=3 addr=127.0.0.1:52555 laddr=127.0.0.1:6379 fd=8 name=stormguard age=12 idle=0 flags=N capa= db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=26 qbuf-free=20448 argv-mem=10 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=22426 events=r cmd=client|list user=default redir=-1 resp=3 lib-name=stormguard lib-ver=dev tot-net-in=1 tot-net-out=2 tot-cmds=3\n" +
	"id=4 addr=10.0.3.7:40000 laddr=10.0.0.1:6379 fd=9 name= age=3 idle=3 flags=N capa= db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1 events=r cmd=ping user=default redir=-1 resp=2 lib-name=redis-py lib-ver=5.0.1\n" +
	"id=5 addr=[2001:db8::5]:40001 laddr=[2001:db8::1]:6379 fd=10 name=worker age=300 idle=120 flags=N cmd=get lib-name=redis-py lib-ver=5.0.1\n" +
	"id=6 addr=/tmp/valkey.sock:0 laddr=/tmp/valkey.sock:0 fd=11 name= age=40 idle=1 flags=U cmd=NULL lib-name= lib-ver=\n"

func TestParse(t *testing.T) {
	cs, err := Parse(sample8)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 4 {
		t.Fatalf("got %d clients, want 4", len(cs))
	}
	tests := []struct {
		i              int
		ip, lib, name  string
		age, idle      int64
		id             uint64
		wantValidIP    bool
		wantCmd, flags string
	}{
		{0, "127.0.0.1", "stormguard dev", "stormguard", 12, 0, 3, true, "client|list", "N"},
		{1, "10.0.3.7", "redis-py 5.0.1", "", 3, 3, 4, true, "ping", "N"},
		{2, "2001:db8::5", "redis-py 5.0.1", "worker", 300, 120, 5, true, "get", "N"},
		{3, "invalid IP", Unset, "", 40, 1, 6, false, "NULL", "U"},
	}
	for _, tt := range tests {
		c := cs[tt.i]
		if c.IP.IsValid() != tt.wantValidIP || (tt.wantValidIP && c.IP.String() != tt.ip) {
			t.Errorf("client %d: IP %v, want %s", tt.i, c.IP, tt.ip)
		}
		if LibraryOf(c) != tt.lib || c.Name != tt.name || c.Age != tt.age || c.Idle != tt.idle || c.ID != tt.id || c.Cmd != tt.wantCmd || c.Flags != tt.flags {
			t.Errorf("client %d: %+v (library %q)", tt.i, c, LibraryOf(c))
		}
	}
}

func TestParseEdge(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		n       int
		wantErr bool
	}{
		{"empty", "", 0, false},
		{"blank lines and CRLF", "\r\n id=1 addr=1.2.3.4:5 age=x idle=-3\r\n\n", 1, false},
		{"resp3 verbatim prefix", "txt:id=1 addr=1.2.3.4:5\n", 1, false},
		{"not client list", "ERR unknown command\n", 0, true},
		{"ipv6 without brackets", "id=1 addr=::1:6000\n", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := Parse(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if len(cs) != tt.n {
				t.Fatalf("got %d clients, want %d", len(cs), tt.n)
			}
		})
	}
	cs, _ := Parse("id=1 addr=1.2.3.4:5 age=x idle=-3\n")
	if cs[0].Age != -1 || cs[0].Idle != -1 {
		t.Errorf("bad age/idle should be -1: %+v", cs[0])
	}
	cs, _ = Parse("id=1 addr=::1:6000\n")
	if cs[0].IP.String() != "::1" {
		t.Errorf("IPv6 without brackets: %v", cs[0].IP)
	}
}

func TestReplicationLink(t *testing.T) {
	for flags, want := range map[string]bool{"N": false, "S": true, "M": true, "Mb": true, "x": false, "": false} {
		if got := (Client{Flags: flags}).ReplicationLink(); got != want {
			t.Errorf("flags %q: ReplicationLink %v, want %v", flags, got, want)
		}
	}
}

func TestLibraryOf(t *testing.T) {
	tests := []struct{ name, ver, want string }{
		{"", "", Unset},
		{"valkey-go", "", "valkey-go"},
		{"", "1.0", Unset + " 1.0"},
		{"valkey-py", "6.1.0", "valkey-py 6.1.0"},
	}
	for _, tt := range tests {
		if got := LibraryOf(Client{LibName: tt.name, LibVer: tt.ver}); got != tt.want {
			t.Errorf("LibraryOf(%q, %q) = %q, want %q", tt.name, tt.ver, got, tt.want)
		}
	}
}

func TestGroupClients(t *testing.T) {
	var b strings.Builder
	// 6 young redis-py clients from 10.0.3.7, 3 old valkey-go clients
	// from 10.0.4.1, 1 unset from 10.0.4.2.
	for i := range 6 {
		b.WriteString("id=1 addr=10.0.3.7:" + string(rune('0'+i)) + "000 age=" + string(rune('0'+i)) + " idle=0 lib-name=redis-py lib-ver=5.0.1\n")
	}
	for range 3 {
		b.WriteString("id=2 addr=10.0.4.1:1 age=600 idle=30 lib-name=valkey-go lib-ver=1.0.79\n")
	}
	b.WriteString("id=3 addr=10.0.4.2:1 age=20 idle=20\n")
	cs, err := Parse(b.String())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s := GroupClients(cs, at, 10*time.Second, 2)
	if s.Clients != 10 || s.Young != 6 || s.DistinctLibs != 3 || s.DistinctIPs != 3 {
		t.Fatalf("snapshot totals: %+v", s)
	}
	want := []struct {
		lib   string
		count int
		young int
		age   int64
	}{{"redis-py 5.0.1", 6, 6, 3}, {"valkey-go 1.0.79", 3, 0, 600}}
	if len(s.Libraries) != 2 {
		t.Fatalf("libraries: %+v", s.Libraries)
	}
	for i, w := range want {
		g := s.Libraries[i]
		if g.Library != w.lib || g.Count != w.count || g.Young != w.young || g.MedianAgeS == nil || *g.MedianAgeS != w.age {
			t.Errorf("library group %d = %+v, want %+v", i, g, w)
		}
	}
	if s.OtherLibraries != 1 || s.OtherIPs != 1 {
		t.Errorf("others: libs %d ips %d, want 1 and 1", s.OtherLibraries, s.OtherIPs)
	}
	if s.IPs[0].IP != "10.0.3.7" || s.IPs[0].Share != 0.6 || s.IPs[0].YoungShare != 1 || s.IPs[0].TopLibrary != "redis-py 5.0.1" || s.IPs[0].TopLibraryCount != 6 {
		t.Errorf("top IP group: %+v", s.IPs[0])
	}
	if _, err := json.Marshal(s); err != nil {
		t.Fatal(err)
	}
	// Empty input: empty (not null) lists.
	e := GroupClients(nil, at, 10*time.Second, 0)
	raw, _ := json.Marshal(e)
	if !strings.Contains(string(raw), `"libraries":[]`) {
		t.Errorf("empty snapshot JSON: %s", raw)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample8)
	f.Add("")
	f.Add("id=1 addr=[::1 age=99999999999999999999 idle=\n")
	f.Add("=\n==\nx=y=z\n")
	f.Add("txt:id=1 addr=1.2.3.4:5\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		cs, err := Parse(in)
		if err != nil {
			return
		}
		s := GroupClients(cs, time.Time{}, 10*time.Second, 3)
		if s.Clients != len(cs) {
			t.Fatalf("grouped %d of %d", s.Clients, len(cs))
		}
		sum := s.OtherLibraries
		for _, g := range s.Libraries {
			sum += g.Count
			if g.Young > g.Count || g.Count == 0 {
				t.Fatalf("bad group %+v", g)
			}
		}
		if sum != len(cs) {
			t.Fatalf("library groups cover %d of %d clients", sum, len(cs))
		}
		if _, err := json.Marshal(s); err != nil {
			t.Fatal(err)
		}
	})
}
