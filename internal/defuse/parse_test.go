package defuse

import (
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/valkeyconn"
)

const infoFixture = "# Clients\r\nconnected_clients:48\r\ncluster_connections:0\r\nmaxclients:50\r\nblocked_clients:0\r\n\r\n# Stats\r\ntotal_connections_received:1234\r\nrejected_connections:7\r\nweird_line_without_colon\r\n"

func TestAtoi(t *testing.T) {
	m := valkeyconn.ParseInfo(infoFixture)
	for k, want := range map[string]int64{"connected_clients": 48, "maxclients": 50, "rejected_connections": 7, "total_connections_received": 1234} {
		if got, ok := atoi(m, k); !ok || got != want {
			t.Errorf("%s = %d, %v; want %d", k, got, ok, want)
		}
	}
	if _, ok := atoi(m, "missing"); ok {
		t.Error("missing key found")
	}
}

const clientListFixture = "id=3 addr=127.0.0.1:40000 laddr=127.0.0.1:6379 fd=8 name= age=100 idle=100 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 cmd=ping user=default\n" +
	"id=4 addr=127.0.0.1:40002 laddr=127.0.0.1:6379 fd=9 name= age=100 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 cmd=get user=default\n" +
	"id=5 addr=127.0.0.1:40004 laddr=127.0.0.1:6379 fd=10 name= age=100 idle=200 flags=b db=0 sub=0 psub=0 ssub=0 multi=-1 cmd=blpop user=default\n" +
	"id=6 addr=127.0.0.1:40006 laddr=127.0.0.1:6379 fd=11 name= age=100 idle=200 flags=P db=0 sub=1 psub=0 ssub=0 multi=-1 cmd=subscribe user=default\n" +
	"id=7 addr=127.0.0.1:40008 laddr=127.0.0.1:6379 fd=12 name= age=100 idle=300 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 cmd=client|list user=default\n" +
	"id=8 addr=127.0.0.1:40010 laddr=127.0.0.1:6379 fd=13 name= age=100 idle=90 flags=x db=0 sub=0 psub=0 ssub=0 multi=2 cmd=multi user=default\n"

func TestIdleVictims(t *testing.T) {
	cl := parseClientList(clientListFixture)
	if len(cl) != 6 {
		t.Fatalf("parsed %d clients, want 6", len(cl))
	}
	got := idleVictims(cl, "7", 60*time.Second)
	var ids []string
	for _, c := range got {
		ids = append(ids, c["id"])
	}
	// 3 is idle; 4 active; 5 blocked; 6 subscribed; 7 is us; 8 in MULTI.
	if len(ids) != 1 || ids[0] != "3" {
		t.Fatalf("victims %v, want [3]", ids)
	}
	if got := idleVictims(cl, "7", 150*time.Second); len(got) != 0 {
		t.Errorf("min idle 150s: %d victims, want 0", len(got))
	}
}

const netstatFixture = `TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops
TcpExt: 0 0 42 43
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 0
`

func TestParseNetstat(t *testing.T) {
	m := parseNetstat([]byte(netstatFixture))
	if m["TcpExt.ListenOverflows"] != 42 || m["TcpExt.ListenDrops"] != 43 || len(m) != 6 {
		t.Fatalf("parsed %v", m)
	}
}

func FuzzParseClientList(f *testing.F) {
	f.Add(clientListFixture)
	f.Add("id=1 idle=x flags=")
	f.Add("= = =\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		cl := parseClientList(s)
		_ = idleVictims(cl, "1", time.Second)
	})
}
