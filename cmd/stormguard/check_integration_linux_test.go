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
