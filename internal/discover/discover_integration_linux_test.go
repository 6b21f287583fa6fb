package discover_test

import (
	"testing"

	"github.com/stormguard/stormguard/internal/discover"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

func TestIntegrationDiscoverNamespacedValkey(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Port: 7379})
	servers, err := discover.Scanner{}.Scan()
	if err != nil {
		t.Fatal(err)
	}
	pid := sb.ValkeyPID()
	for _, s := range servers {
		if s.PID != pid {
			continue
		}
		if s.NetNS == "" {
			t.Fatalf("server in a private namespace discovered without its namespace: %+v", s)
		}
		if len(s.Addrs) != 1 || s.Addrs[0] != "127.0.0.1:7379" {
			t.Fatalf("addrs = %v, want [127.0.0.1:7379] (IPv4 preferred over ::1)", s.Addrs)
		}
		return
	}
	t.Fatalf("sandbox valkey-server (pid %d) not discovered in %+v", pid, servers)
}
