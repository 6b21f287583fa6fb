package procnet

import (
	"bytes"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParseStats(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Stats
		wantErr string
	}{
		{"pair", "TcpExt: A B\nTcpExt: 1 2\n", Stats{"TcpExt": {"A": 1, "B": 2}}, ""},
		{"unknown section kept", "Foo: X\nFoo: 9\n", Stats{"Foo": {"X": 9}}, ""},
		{"negative setting skipped", "Tcp: MaxConn CurrEstab\nTcp: -1 4\n", Stats{"Tcp": {"CurrEstab": 4}}, ""},
		{"empty", "", Stats{}, ""},
		{"blank lines", "\nTcp: A\nTcp: 1\n\n", Stats{"Tcp": {"A": 1}}, ""},
		{"no trailing newline", "Tcp: A\nTcp: 1", Stats{"Tcp": {"A": 1}}, ""},
		{"header only", "TcpExt: A B\n", nil, "line 1: TcpExt header without a value line"},
		{"count mismatch", "TcpExt: A B\nTcpExt: 1\n", nil, "line 2: TcpExt has 2 names but 1 values"},
		{"section mismatch", "TcpExt: A\nIpExt: 1\n", nil, "line 2: want TcpExt values"},
		{"not a number", "Tcp: A\nTcp: x1\n", nil, `line 2: Tcp A: value "x1" is not a number`},
		{"overflow", "Tcp: A\nTcp: 99999999999999999999999\n", nil, "is not a number"},
		{"no prefix", "garbage\n", nil, "line 1: no \"Section:\" prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStats(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzParseStats(f *testing.F) {
	for _, p := range []string{
		"../source/testdata/proc-6.18/net/netstat", "../source/testdata/proc-6.18/net/snmp",
		"../source/testdata/proc-2.6.32-handmade/net/netstat", "../source/testdata/proc-2.6.32-handmade/net/snmp",
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Tcp: A B\nTcp: 1 -1\n"))
	f.Add([]byte("Tcp: A\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseStats(bytes.NewReader(b))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		// Keeping sections gives exactly those sections of the full parse.
		some, err := ParseStatsSections(bytes.NewReader(b), "Tcp", "TcpExt")
		if err != nil {
			t.Fatalf("ParseStatsSections failed where ParseStats did not: %v", err)
		}
		want := Stats{}
		for _, sec := range []string{"Tcp", "TcpExt"} {
			if m, ok := got[sec]; ok {
				want[sec] = m
			}
		}
		if !reflect.DeepEqual(want, some) {
			t.Fatalf("ParseStatsSections = %v, want %v", some, want)
		}
		// Round trip: writing the result back in the kernel's format
		// and parsing it again gives the same counters.
		var buf bytes.Buffer
		for sec, m := range got {
			var names, vals []string
			for k, v := range m {
				names = append(names, k)
				vals = append(vals, strconv.FormatUint(v, 10))
			}
			buf.WriteString(sec + ": " + strings.Join(names, " ") + "\n" + sec + ": " + strings.Join(vals, " ") + "\n")
		}
		again, err := ParseStats(&buf)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", buf.String(), err)
		}
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("round trip changed %v into %v", got, again)
		}
	})
}
