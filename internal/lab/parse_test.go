package lab

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestParseNetstat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]map[string]uint64
		wantErr bool
	}{
		{
			name: "two prefixes",
			in:   "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 1 42 43\nIpExt: InNoRoutes\nIpExt: 7\n",
			want: map[string]map[string]uint64{
				"TcpExt": {"SyncookiesSent": 1, "ListenOverflows": 42, "ListenDrops": 43},
				"IpExt":  {"InNoRoutes": 7},
			},
		},
		{
			name: "negative value skipped (snmp MaxConn)",
			in:   "Tcp: RtoAlgorithm MaxConn ActiveOpens\nTcp: 1 -1 9\n",
			want: map[string]map[string]uint64{"Tcp": {"RtoAlgorithm": 1, "ActiveOpens": 9}},
		},
		{name: "header without values", in: "TcpExt: A B\n", wantErr: true},
		{name: "column count mismatch", in: "TcpExt: A B\nTcpExt: 1\n", wantErr: true},
		{name: "prefix mismatch", in: "TcpExt: A\nIpExt: 1\n", wantErr: true},
		{name: "empty", in: "", want: map[string]map[string]uint64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNetstat(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for p, m := range tt.want {
				for k, v := range m {
					if got[p][k] != v {
						t.Errorf("%s.%s = %d, want %d", p, k, got[p][k], v)
					}
				}
				if len(got[p]) != len(m) {
					t.Errorf("%s has %d fields, want %d", p, len(got[p]), len(m))
				}
			}
		})
	}
}

func TestParseNetstatFixture(t *testing.T) {
	f, err := os.Open("testdata/netstat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := parseNetstat(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ListenOverflows", "ListenDrops", "TCPReqQFullDoCookies"} {
		if _, ok := got["TcpExt"][k]; !ok {
			t.Errorf("TcpExt.%s missing from a real kernel's netstat", k)
		}
	}
}

func FuzzParseNetstat(f *testing.F) {
	if b, err := os.ReadFile("testdata/netstat"); err == nil {
		f.Add(string(b))
	}
	f.Add("TcpExt: A B\nTcpExt: 1 2\n")
	f.Add("Tcp: MaxConn\nTcp: -1\n")
	f.Add("TcpExt: A\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseNetstat(strings.NewReader(s))
		if err == nil && m == nil {
			t.Fatal("nil map without error")
		}
	})
}

func TestParseInfo(t *testing.T) {
	in := "# Stats\r\ntotal_connections_received:1234\r\nrejected_connections:5\r\ninstantaneous_input_kbps:0.01\r\nbad line\r\n\r\n"
	got := parseInfo([]byte(in))
	want := map[string]uint64{"total_connections_received": 1234, "rejected_connections": 5}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}

func FuzzParseInfo(f *testing.F) {
	f.Add([]byte("# Stats\r\nrejected_connections:5\r\n"))
	f.Add([]byte("a:b:c\n::\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for k := range parseInfo(b) {
			if strings.ContainsAny(k, "\r\n") {
				t.Fatalf("key %q spans lines", k)
			}
		}
	})
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		in      string
		kind    byte
		line    string
		n       int64
		bulk    string
		wantErr bool
	}{
		{in: "+PONG\r\n", kind: '+', line: "PONG"},
		{in: "-ERR max number of clients reached\r\n", kind: '-', line: "ERR max number of clients reached"},
		{in: ":17\r\n", kind: ':', line: "17", n: 17},
		{in: "$5\r\nhello\r\n", kind: '$', line: "5", n: 5, bulk: "hello"},
		{in: "$-1\r\n", kind: '$', line: "-1", n: -1},
		{in: "*2\r\n:1\r\n$1\r\nx\r\n", kind: '*', line: "2", n: 2},
		{in: "%1\r\n+a\r\n+b\r\n", kind: '%', line: "1", n: 1},
		{in: ":x\r\n", wantErr: true},
		{in: "$3\r\nab\r\n", wantErr: true},
		{in: "$99999999999\r\n", wantErr: true},
		{in: "?\r\n", wantErr: true},
		{in: "+PONG\n", wantErr: true},
		{in: "*1\r\n", wantErr: true},
	}
	for _, tt := range tests {
		rp, err := readReply(bufio.NewReader(strings.NewReader(tt.in)))
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: err = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if tt.wantErr {
			continue
		}
		if rp.kind != tt.kind || rp.line != tt.line || rp.n != tt.n || string(rp.bulk) != tt.bulk {
			t.Errorf("%q: got %+v", tt.in, rp)
		}
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "$5\r\nhello\r\n", "*2\r\n:1\r\n$-1\r\n", "%1\r\n+a\r\n+b\r\n", "-ERR x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rp, err := readReply(bufio.NewReader(bytes.NewReader(b)))
		if err == nil && rp.kind == '$' && rp.n >= 0 && int64(len(rp.bulk)) != rp.n {
			t.Fatalf("bulk length %d, header %d", len(rp.bulk), rp.n)
		}
	})
}

func TestAppendCommand(t *testing.T) {
	got := string(appendCommand(nil, "CLIENT", "KILL", ""))
	want := "*3\r\n$6\r\nCLIENT\r\n$4\r\nKILL\r\n$0\r\n\r\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
