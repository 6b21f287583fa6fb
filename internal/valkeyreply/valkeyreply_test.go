package valkeyreply

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

func TestParseClientList(t *testing.T) {
	in := "id=3 addr=127.0.0.1:52344 laddr=127.0.0.1:6379 fd=8 name=stormguard age=12 idle=0 flags=N lib-name=valkey-go lib-ver=1.0.79 cmd=client|list\n" +
		"id=4 addr=[::1]:40000 fd=9 name= age=0 idle=0 flags=N cmd=set foo bar\n\n"
	got := ParseClientList(in)
	if len(got) != 2 {
		t.Fatalf("got %d clients", len(got))
	}
	if got[0]["lib-name"] != "valkey-go" || got[0]["age"] != "12" || got[0]["name"] != "stormguard" {
		t.Errorf("client 0 = %v", got[0])
	}
	if got[1]["cmd"] != "set foo bar" || got[1]["name"] != "" {
		t.Errorf("client 1 = %v", got[1])
	}
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

func FuzzParseClientList(f *testing.F) {
	f.Add("id=3 addr=127.0.0.1:52344 name=x age=1\nid=4 addr=[::1]:1 cmd=a b c\n")
	f.Add("= =x k= \n\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range ParseClientList(s) {
			if len(c) == 0 {
				t.Fatal("empty client")
			}
			for k := range c {
				if k == "" {
					t.Fatal("empty key")
				}
			}
		}
	})
}
