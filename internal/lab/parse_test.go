package lab

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/valkeyconn"
)

func TestInfoCounters(t *testing.T) {
	in := "# Stats\r\ntotal_connections_received:1234\r\nrejected_connections:5\r\ninstantaneous_input_kbps:0.01\r\n"
	got := infoCounters(valkeyconn.ParseInfo(in))
	if got["total_connections_received"] != 1234 || got["rejected_connections"] != 5 {
		t.Fatalf("got %v", got)
	}
	if _, ok := got["instantaneous_input_kbps"]; ok {
		t.Error("a non-integer field was kept as a counter")
	}
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
