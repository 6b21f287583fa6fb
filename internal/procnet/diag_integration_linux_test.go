package procnet_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stormguard/stormguard/internal/procnet"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// The sock_diag LISTEN dump finds the same listeners as /proc/net/tcp{,6}
// in a namespace with Valkey (IPv4 and IPv6 loopback) and open clients,
// which the dump must leave out.
func TestIntegrationDiagListeners(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Port: 7380})
	for range 3 {
		c, err := sb.Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	diag, err := procnet.DiagListeners(sb.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	proc, err := procnet.Listeners(sb.NetNS, 0)
	if err != nil {
		t.Fatal(err)
	}
	key := func(ls []procnet.Listener) []string {
		var out []string
		for _, l := range ls {
			out = append(out, fmt.Sprint(l.IP, l.Port, l.Inode))
		}
		slices.Sort(out)
		return out
	}
	if len(diag) < 2 || !slices.Equal(key(diag), key(proc)) {
		t.Fatalf("sock_diag listeners %+v, /proc listeners %+v", diag, proc)
	}
	for _, l := range diag {
		if l.Port != 7380 || l.Inode == 0 {
			t.Errorf("listener %+v: want port 7380 and an inode", l)
		}
	}
}
