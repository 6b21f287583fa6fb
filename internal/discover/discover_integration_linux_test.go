package discover_test

import (
	"reflect"
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

// A rescan with a memo returns the same answer as the first scan; a
// restarted server (new process, new listeners) is inspected anew.
func TestIntegrationDiscoverMemo(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Port: 7381})
	sc := discover.Scanner{Memo: &discover.Memo{}}
	find := func() discover.Server {
		t.Helper()
		servers, err := sc.Scan()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range servers {
			if s.PID == sb.ValkeyPID() {
				return s
			}
		}
		t.Fatalf("valkey pid %d not discovered", sb.ValkeyPID())
		return discover.Server{}
	}
	first, again := find(), find()
	if !reflect.DeepEqual(first, again) || len(first.Addrs) != 1 || first.Addrs[0] != "127.0.0.1:7381" {
		t.Fatalf("first scan %+v, rescan %+v", first, again)
	}
	// Restarted: a new process (new PID and listeners) is inspected anew.
	if err := sb.StopValkey(); err != nil {
		t.Fatal(err)
	}
	if err := sb.StartValkey(t.Context()); err != nil {
		t.Fatal(err)
	}
	after := find()
	if after.PID == first.PID || len(after.Addrs) != 1 || after.Addrs[0] != "127.0.0.1:7381" {
		t.Fatalf("after restart %+v (before %+v)", after, first)
	}
}

// Two servers on the same loopback address in two namespaces (two pods
// whose Valkey listens on the wildcard address) get two names.
func TestIntegrationDiscoverSameAddressTwoNamespaces(t *testing.T) {
	a := sandboxtest.New(t, sandbox.Options{Port: 7383})
	b := sandboxtest.New(t, sandbox.Options{Port: 7383})
	servers, err := discover.Scanner{}.Scan()
	if err != nil {
		t.Fatal(err)
	}
	names := map[int]string{}
	for _, s := range servers {
		if (s.PID == a.ValkeyPID() || s.PID == b.ValkeyPID()) && len(s.Addrs) == 1 {
			names[s.PID] = s.Name(s.Addrs[0])
		}
	}
	for _, sb := range []*sandbox.Sandbox{a, b} {
		if want := "127.0.0.1:7383@" + sb.Name; names[sb.ValkeyPID()] != want {
			t.Errorf("pid %d named %q, want %q (all: %v)", sb.ValkeyPID(), names[sb.ValkeyPID()], want, names)
		}
	}
}
