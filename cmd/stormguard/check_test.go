package main

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// runCLI runs the root command in-process and returns stdout, the error
// line main would print, and the exit code.
func runCheckCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	r := execCLI(t, args...)
	if isSilent(r.Err) {
		r.Msg = ""
	}
	return r.Stdout, r.Msg, r.Code
}

type checkJSON struct {
	Findings []struct {
		ID       string `json:"id"`
		Severity string `json:"severity"`
		Title    string `json:"title"`
		Evidence string `json:"evidence"`
		Fix      string `json:"fix"`
		Target   string `json:"target"`
	} `json:"findings"`
}

func parseCheck(t *testing.T, out string) checkJSON {
	t.Helper()
	var doc checkJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("check --format json printed invalid JSON: %v\n%s", err, out)
	}
	return doc
}

func (d checkJSON) severity(id string) string {
	for _, f := range d.Findings {
		if f.ID == id {
			return f.Severity
		}
	}
	return ""
}

func TestCheckUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"malformed address", []string{"check", "--valkey", "nohostport"}, "bad Valkey address"},
		{"bad port", []string{"check", "--valkey", "127.0.0.1:99999"}, "out of range"},
		{"password redacted", []string{"check", "--valkey", "ftp://u:hunter2@h:1"}, "unknown scheme"},
		{"bad format", []string{"check", "--format", "yaml"}, "unknown format"},
		{"bad fail-on", []string{"check", "--fail-on", "ok"}, "--fail-on"},
		{"bad role", []string{"check", "--role", "proxy"}, "--role"},
		{"bad window", []string{"check", "--window", "0s"}, "--window"},
		{"bad netns", []string{"check", "--netns", "/nonexistent"}, "network namespace"},
		{"password file without a server", []string{"check", "--no-discover", "--password-file", "/etc/hostname"}, "needs --valkey"},
		{"password file on a client host", []string{"check", "--role", "client", "--password-file", "/etc/hostname"}, "needs --valkey"},
		{"unknown flag", []string{"check", "--frobnicate"}, "unknown flag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, msg, code := runCheckCLI(t, c.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d (%s)", code, exitUsage, msg)
			}
			if !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Errorf("message %q lacks %q or spans lines", msg, c.want)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("password leaked: %q", msg)
			}
		})
	}
}

// TestCheckKernelOnly audits this host without Valkey: the exit code must
// agree with the findings printed.
func TestCheckKernelOnly(t *testing.T) {
	for _, failOn := range []string{"warning", "critical"} {
		out, msg, code := runCheckCLI(t, "check", "--no-discover", "--format", "json", "--fail-on", failOn, "--window", "100ms")
		doc := parseCheck(t, out)
		if doc.severity("valkey-not-checked") != "info" {
			t.Errorf("valkey-not-checked = %q", doc.severity("valkey-not-checked"))
		}
		if doc.severity("nic-allowance-exceeded") == "" {
			t.Error("no nic-allowance-exceeded finding")
		}
		worst := 0
		rank := map[string]int{"ok": 0, "info": 1, "warning": 2, "critical": 3}
		for _, f := range doc.Findings {
			worst = max(worst, rank[f.Severity])
		}
		want := exitOK
		if worst >= rank[failOn] {
			want = exitFindings
		}
		if code != want {
			t.Errorf("--fail-on %s: exit %d (%s), want %d for worst %d", failOn, code, msg, want, worst)
		}
	}
}

// TestCheckValkeyUnreachable: a refused connection is exit 2, with the
// kernel findings still printed.
func TestCheckValkeyUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close() // nothing listens there now
	out, msg, code := runCheckCLI(t, "check", "--valkey", a, "--format", "json", "--window", "100ms", "--timeout", "1s")
	if code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(msg, "cannot reach Valkey") {
		t.Errorf("message %q", msg)
	}
	doc := parseCheck(t, out)
	if doc.severity("valkey-not-checked") != "info" || doc.severity("syn-retry-schedule") == "" {
		t.Errorf("findings not printed: %s", out)
	}
}

func TestCheckTableAndMarkdown(t *testing.T) {
	out, _, _ := runCheckCLI(t, "check", "--no-discover", "--window", "50ms")
	if strings.Contains(out, "\x1b[") {
		t.Error("table to a buffer is coloured")
	}
	if !strings.Contains(out, "valkey-not-checked") || !strings.Contains(out, " critical, ") {
		t.Errorf("table:\n%s", out)
	}
	out, _, _ = runCheckCLI(t, "check", "--no-discover", "--window", "50ms", "--format", "markdown")
	if !strings.HasPrefix(out, "# stormguard check") || !strings.Contains(out, "(docs/checklist.md#valkey-not-checked)") {
		t.Errorf("markdown:\n%s", out)
	}
}
