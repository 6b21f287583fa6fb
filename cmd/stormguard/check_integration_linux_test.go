//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
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
