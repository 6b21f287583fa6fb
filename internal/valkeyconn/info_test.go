package valkeyconn

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseInfo(t *testing.T) {
	in := "# Clients\r\nconnected_clients:12\r\nmaxclients:10000\r\n\r\n# Server\r\nexecutable:/usr/bin/valkey-server\r\nconnected_clients:99\r\nnocolon\r\n"
	got := ParseInfo("txt:" + in)
	want := map[string]string{"connected_clients": "12", "maxclients": "10000", "executable": "/usr/bin/valkey-server"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseInfo = %v, want %v", got, want)
	}
}

func TestHost(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:5": "127.0.0.1", "[::1]:7": "::1", "::1:7": "::1", "/tmp/v.sock:0": "/tmp/v.sock", "x": "x"} {
		if got := Host(in); got != want {
			t.Errorf("Host(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseInfo(f *testing.F) {
	f.Add("# Server\r\nredis_version:7.2.4\r\nvalkey_version:8.0.1\r\n")
	f.Add("txt:a:b:c\n:x\n#y\n")
	f.Fuzz(func(t *testing.T, s string) {
		for k, v := range ParseInfo(s) {
			if k == "" || strings.ContainsAny(k, "\n") || strings.Contains(v, "\n") {
				t.Fatalf("bad pair %q=%q", k, v)
			}
		}
	})
}
