//go:build linux

package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/agent"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
)

func TestIntegrationCheckCommand(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{
		Sysctls:      map[string]string{"net.core.somaxconn": "64", "net.ipv4.tcp_syncookies": "1", "net.ipv4.tcp_abort_on_overflow": "0"},
		ValkeyArgs:   []string{"--tcp-backlog", "511"},
		ValkeyPrefix: []string{"prlimit", "--nofile=20000"},
	})
	snippet := filepath.Join(t.TempDir(), "90-stormguard.conf")
	base := []string{"check", "--netns", sb.NetNS, "--valkey", sb.Addr(), "--format", "json", "--window", "200ms"}

	out, msg, code := runCheckCLI(t, append(base, "--fail-on", "warning", "--write-sysctl", snippet)...)
	if code != exitFindings {
		t.Fatalf("--fail-on warning: exit %d (%s), want 1\n%s", code, msg, out)
	}
	doc := parseCheck(t, out)
	if s := doc.severity("somaxconn-truncates-backlog"); s != "warning" {
		t.Errorf("somaxconn-truncates-backlog = %q, want warning", s)
	}
	b, err := os.ReadFile(snippet)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nnet.core.somaxconn = 511\n") {
		t.Errorf("sysctl snippet:\n%s", b)
	}

	// Nothing is critical: the default --fail-on passes.
	out, msg, code = runCheckCLI(t, base...)
	if code != exitOK {
		t.Errorf("--fail-on critical: exit %d (%s)\n%s", code, msg, out)
	}
}

// TestIntegrationCheckAtMaxclients: a Valkey that refuses the audit at
// maxclients is a critical finding (exit 1), not a connection error.
func TestIntegrationCheckAtMaxclients(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--maxclients", "2"}})
	for i := 0; i < 2; i++ {
		c, err := sb.Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if err := sb.Ping(t.Context()); err == nil {
		t.Fatal("PING succeeded at maxclients")
	}
	out, msg, code := runCheckCLI(t, "check", "--netns", sb.NetNS, "--valkey", sb.Addr(), "--format", "json", "--window", "100ms")
	if code != exitFindings {
		t.Fatalf("exit %d (%s), want 1\n%s", code, msg, out)
	}
	if s := parseCheck(t, out).severity("clients-near-maxclients"); s != "critical" {
		t.Errorf("clients-near-maxclients = %q, want critical", s)
	}
}

// TestIntegrationCheckDiscovers: without --valkey, check finds the
// valkey-server of the namespace (--netns keeps the shared machine's other
// servers out) and audits it like --valkey would; a namespace without a
// server gets a kernel-only audit that says no server was found.
func TestIntegrationCheckDiscovers(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{
		Sysctls:    map[string]string{"net.core.somaxconn": "64"},
		ValkeyArgs: []string{"--tcp-backlog", "511"},
	})
	for _, format := range []string{"json", "table"} {
		out, msg, code := runCheckCLI(t, "check", "--netns", sb.NetNS, "--format", format, "--window", "100ms", "--fail-on", "critical")
		if code != exitOK {
			t.Fatalf("%s: exit %d (%s)\n%s", format, code, msg, out)
		}
		if format == "table" {
			if !strings.Contains(out, "== "+sb.Addr()+" (valkey-server pid ") || strings.Contains(out, "valkey-not-checked") {
				t.Errorf("table does not name the discovered server or did not audit it:\n%s", out)
			}
			continue
		}
		doc := parseCheck(t, out)
		if s := doc.severity("somaxconn-truncates-backlog"); s != "warning" {
			t.Errorf("somaxconn-truncates-backlog = %q, want warning (the discovered server's tcp-backlog 511 > somaxconn 64)", s)
		}
		if s := doc.severity("valkey-not-checked"); s != "" {
			t.Errorf("valkey-not-checked is %s: discovery did not audit the server\n%s", s, out)
		}
		for _, f := range doc.Findings {
			if f.Target != sb.Addr()+" in "+sb.NetNS {
				t.Fatalf("finding %s has target %q, want %q", f.ID, f.Target, sb.Addr()+" in "+sb.NetNS)
			}
		}
	}

	// The same namespace with its server stopped: nothing to discover.
	if err := sb.StopValkey(); err != nil {
		t.Fatal(err)
	}
	out, msg, code := runCheckCLI(t, "check", "--netns", sb.NetNS, "--format", "json", "--window", "100ms")
	if code != exitOK {
		t.Fatalf("no server: exit %d (%s)\n%s", code, msg, out)
	}
	doc := parseCheck(t, out)
	found := false
	for _, f := range doc.Findings {
		if f.ID == "valkey-not-checked" {
			found = strings.Contains(f.Evidence, "no local valkey-server or redis-server process found")
		}
	}
	if !found {
		t.Errorf("no valkey-not-checked finding saying nothing was discovered:\n%s", out)
	}
}

// TestIntegrationCheckAtMaxclientsAgent: Valkey at maxclients refuses
// check's own connection; check still reports rejected-connections-seen
// (critical) with that refusal as evidence, and adds the counters a running
// agent (a real in-process watch agent, whose reserved connection predates
// the exhaustion) last read, saying where each came from.
func TestIntegrationCheckAtMaxclientsAgent(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{"--maxclients", "3"}})
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	hub := serve.NewHub(source.Names(), 100, 100)
	ag, err := agent.New(agent.Options{Targets: []source.Target{{Addr: a, NetNS: sb.NetNS}}, Interval: 100 * time.Millisecond, Hub: hub})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ag.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	srv := httptest.NewServer(serve.Handler(hub, serve.Options{}))
	defer srv.Close()
	valkeyFields := func(cond func(*sample.Valkey) bool) bool {
		for _, v := range hub.Views() {
			if v.Sample != nil && v.Sample.Valkey != nil && cond(v.Sample.Valkey) {
				return true
			}
		}
		return false
	}
	waitUntil(t, "the agent's first sample with Valkey's fields", func() bool {
		return valkeyFields(func(*sample.Valkey) bool { return true })
	})
	// Fill the remaining slots, then be refused once more: Valkey counts it.
	for i := 0; i < 5 && sb.Ping(t.Context()) == nil; i++ {
		c, err := sb.Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if err := sb.Ping(t.Context()); err == nil {
		t.Fatal("PING succeeded: Valkey is not at maxclients")
	}
	waitUntil(t, "the agent to see rejected_connections > 0", func() bool {
		return valkeyFields(func(v *sample.Valkey) bool { return v.RejectedConnections != nil && *v.RejectedConnections > 0 })
	})

	base := []string{"check", "--netns", sb.NetNS, "--valkey", sb.Addr(), "--format", "json", "--window", "100ms"}
	for _, tc := range []struct {
		agent string
		want  []string
	}{
		{srv.URL, []string{"check's own connection was refused just now", "max number of clients", "the stormguard agent at " + srv.URL + "/api/v1/state", "rejected_connections ", "connected_clients 3 of maxclients 3"}},
		{"http://127.0.0.1:1", []string{"check's own connection was refused just now", "no counters from a stormguard agent"}},
	} {
		out, msg, code := runCheckCLI(t, append(base, "--agent", tc.agent)...)
		if code != exitFindings {
			t.Fatalf("--agent %s: exit %d (%s), want 1\n%s", tc.agent, code, msg, out)
		}
		var ev string
		for _, f := range parseCheck(t, out).Findings {
			if f.ID == "rejected-connections-seen" {
				if f.Severity != "critical" {
					t.Errorf("rejected-connections-seen is %s, want critical", f.Severity)
				}
				ev = f.Evidence
			}
		}
		for _, w := range tc.want {
			if !strings.Contains(ev, w) {
				t.Errorf("--agent %s: rejected-connections-seen evidence %q lacks %q", tc.agent, ev, w)
			}
		}
	}
}

// waitUntil polls cond every 50 ms for up to 20 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
