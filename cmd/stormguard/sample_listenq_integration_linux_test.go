//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationSampleListenQueue runs `stormguard sample --json --netns`
// in-process against a real Valkey in a namespace and checks the accept-queue
// keys of the contract are filled from that namespace.
func TestIntegrationSampleListenQueue(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{"net.core.somaxconn": "64"}})
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"sample", "--valkey", sb.Addr(), "--netns", sb.NetNS, "--json", "--count", "2", "--interval", "300ms"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("sample: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 JSON lines, got %d:\n%s", len(lines), out.String())
	}
	for i, line := range lines {
		var s struct {
			Listen *struct {
				Depth    *uint64 `json:"depth"`
				DepthMax *uint64 `json:"depth_max"`
				Limit    *uint64 `json:"limit"`
				Sockets  int     `json:"sockets"`
				Polls    uint64  `json:"polls"`
			} `json:"listen"`
			SynRecv     *uint64           `json:"syn_recv"`
			Established *uint64           `json:"established"`
			Errors      map[string]string `json:"errors"`
		}
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		if reason, ok := s.Errors["listenq"]; ok {
			t.Fatalf("line %d: listenq error %q", i, reason)
		}
		l := s.Listen
		if l == nil || l.Depth == nil || l.DepthMax == nil || l.Limit == nil || *l.Limit != 64 || l.Sockets != 2 ||
			s.SynRecv == nil || s.Established == nil {
			t.Fatalf("line %d: listen fields not filled from the namespace (want limit 64 = somaxconn, 2 sockets): %s", i, line)
		}
		if i == 1 && l.Polls < 2 {
			t.Errorf("second sample based on %d polls; the 100 Hz poller should have run in 300ms", l.Polls)
		}
	}
	t.Logf("sample output:\n%s", out.String())
}
