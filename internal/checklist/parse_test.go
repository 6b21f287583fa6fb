package checklist

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/valkeyconn"
)

func TestInfoVersion(t *testing.T) {
	in := "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n\r\n# Clients\r\nconnected_clients:3\r\nbad line\r\n:novalue\r\nmaxclients:10000\r\n"
	got := valkeyconn.ParseInfo(in)
	want := map[string]string{"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.0.1", "connected_clients": "3", "maxclients": "10000"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseInfo = %v, want %v", got, want)
	}
	v := &ValkeyFacts{Info: got}
	if v.Version() != "8.0.1" || !v.IsValkey() {
		t.Errorf("Version %q IsValkey %v", v.Version(), v.IsValkey())
	}
}

func TestParseLimitsNoFile(t *testing.T) {
	fixture, err := os.ReadFile("testdata/limits")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 524288               files     \n", 1024, false},
		{"Max open files            unlimited            unlimited            files\n", Unlimited, false},
		{"Max processes 10 10 processes\n", 0, true},
		{"Max open files            lots                 1                    files\n", 0, true},
		{"Max open files", 0, true},
	}
	for _, c := range cases {
		got, err := ParseLimitsNoFile(c.in)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("ParseLimitsNoFile(%q) = %d, %v; want %d, err %v", c.in, got, err, c.want, c.wantErr)
		}
	}
	if n, err := ParseLimitsNoFile(string(fixture)); err != nil || n == 0 {
		t.Errorf("fixture: %d, %v", n, err)
	}
}

func TestParseNetstat(t *testing.T) {
	for _, file := range []string{"testdata/netstat", "testdata/snmp"} {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ParseNetstat(f, CounterNames)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for k := range m {
			found := false
			for _, n := range CounterNames {
				found = found || n == k
			}
			if !found {
				t.Errorf("%s: unwanted key %s", file, k)
			}
		}
		if file == "testdata/netstat" {
			if _, ok := m["TcpExt.ListenOverflows"]; !ok {
				t.Errorf("netstat fixture: no ListenOverflows in %v", m)
			}
		} else if _, ok := m["Tcp.PassiveOpens"]; !ok {
			t.Errorf("snmp fixture: no PassiveOpens in %v", m)
		}
	}
	in := "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 3 17\nTcp: RtoAlgorithm MaxConn PassiveOpens\nTcp: 1 -1 42\n"
	m, err := ParseNetstat(strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"TcpExt.SyncookiesSent": 3, "TcpExt.ListenOverflows": 17, "Tcp.RtoAlgorithm": 1, "Tcp.PassiveOpens": 42}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %v, want %v (MaxConn -1 is skipped)", m, want)
	}
	if _, err := ParseNetstat(strings.NewReader("TcpExt: A B\nTcpExt: 1\n"), nil); err == nil {
		t.Error("mismatched value count accepted")
	}
}

func TestParseClientList(t *testing.T) {
	in := "id=3 addr=127.0.0.1:52555 laddr=127.0.0.1:6379 fd=8 name=stormguard-check age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 qbuf=26 qbuf-free=20448 argv-mem=10 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=22426 events=r cmd=client|list user=default redir=-1 resp=3 lib-name=valkey lib-ver=1.0.79 tot-net-in=10 tot-net-out=20 tot-cmds=3\n" +
		"id=4 addr=[::1]:40000 laddr=[::1]:6379 fd=9 name= age=120 idle=5 flags=N lib-name= lib-ver= tot-cmds=7\n" +
		"id=5 addr=/tmp/valkey.sock:0 age=x\n" +
		"garbage without fields\n"
	got := ParseClientList(in)
	want := []ClientConn{
		{ID: "3", IP: "127.0.0.1", Name: "stormguard-check", LibName: "valkey", LibVer: "1.0.79", User: "default", Flags: "N", TotCmds: 3},
		{ID: "4", IP: "::1", Age: 120, Idle: 5, Flags: "N", TotCmds: 7},
		{ID: "5", IP: "/tmp/valkey.sock", TotCmds: -1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseClientList:\n got %+v\nwant %+v", got, want)
	}
}

// FuzzInfoVersion fuzzes the version logic on parsed INFO (the parser
// itself is fuzzed in valkeyconn).
func FuzzInfoVersion(f *testing.F) {
	f.Add("# Server\r\nredis_version:7.2.4\r\nvalkey_version:8.0.1\r\n")
	f.Add(":\n::\nk:v:w\n")
	f.Fuzz(func(t *testing.T, s string) {
		m := valkeyconn.ParseInfo(s)
		for k := range m {
			if k == "" || strings.ContainsAny(k, "\n:") {
				t.Fatalf("bad key %q", k)
			}
		}
		v := &ValkeyFacts{Info: m}
		_ = versionAtLeast(v.Version(), 8, 0)
	})
}

func FuzzParseLimitsNoFile(f *testing.F) {
	f.Add("Max open files            1024                 524288               files\n")
	f.Add("Max open files unlimited")
	f.Add("Max open files")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseLimitsNoFile(s)
		if err != nil && n != 0 {
			t.Fatalf("error with value %d", n)
		}
	})
}

func FuzzParseClientList(f *testing.F) {
	f.Add("id=3 addr=127.0.0.1:52555 laddr=127.0.0.1:6379 name= age=3 idle=0 lib-name=valkey-py lib-ver=6.1 tot-cmds=5\n")
	f.Add("id=4 addr=[::1]:1 age=-1\naddr=\n")
	f.Fuzz(func(t *testing.T, s string) {
		cs := ParseClientList(s)
		fs := Facts{Valkey: valkeyFacts(sysctls("maxclients", "10"), nil), Clients: cs}
		for _, r := range clientRules() {
			_ = r(&fs)
		}
	})
}
