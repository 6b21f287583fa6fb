package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/defuse"
)

// runDefuseCLI returns exit code, stdout and the one-line message.
func runDefuseCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	r := execCLI(t, args...)
	return r.Code, r.Stdout, r.Msg
}

func TestDefuseBadInput(t *testing.T) {
	state := filepath.Join(t.TempDir(), "defuse.json")
	tests := []struct {
		name string
		args []string
		want string // substring of the error
	}{
		{"no ttl", []string{"defuse", "apply", "--action", "ratelimit-syn", "--port", "6379", "--rate", "20/s"}, "--ttl is required"},
		{"unknown action", []string{"defuse", "apply", "--action", "nuke", "--port", "6379", "--ttl", "60s"}, `unknown action "nuke"`},
		{"bad rate", []string{"defuse", "apply", "--action", "ratelimit-syn", "--port", "6379", "--rate", "abc", "--ttl", "60s"}, `rate "abc"`},
		{"no action", []string{"defuse", "apply", "--ttl", "60s"}, "--action is required"},
		{"no port", []string{"defuse", "apply", "--action", "notrack", "--ttl", "60s"}, "needs --port"},
		{"bad ttl", []string{"defuse", "apply", "--action", "notrack", "--port", "1", "--ttl", "soon"}, "invalid argument"},
		{"kill unconfirmed", []string{"defuse", "apply", "--action", "kill-idle", "--ttl", "1s"}, "--yes-kill"},
		{"revert nothing", []string{"defuse", "revert"}, "needs mitigation ids"},
		{"bare defuse", []string{"defuse"}, "needs a subcommand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, msg := runDefuseCLI(t, append(tt.args, "--state", state)...)
			if tt.name == "bare defuse" {
				code, out, msg = runDefuseCLI(t, tt.args...)
			}
			if code != exitUsage {
				t.Errorf("exit %d, want %d (msg %q)", code, exitUsage, msg)
			}
			if !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("message %q, want one line containing %q", msg, tt.want)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}

func TestDefuseRateAccepted(t *testing.T) {
	// Accepted rates get past validation; a dry run of a rate limit
	// renders the rules without touching the kernel.
	for _, r := range []string{"20/s", "100/m"} {
		code, out, msg := runDefuseCLI(t, "defuse", "apply", "--action", "ratelimit-global", "--port", "6379", "--rate", r, "--ttl", "60s",
			"--dry-run", "--state", filepath.Join(t.TempDir(), "s.json"))
		if code != exitOK {
			t.Fatalf("rate %s: exit %d: %s", r, code, msg)
		}
		unit := map[string]string{"20/s": "20/second", "100/m": "100/minute"}[r]
		if !strings.Contains(out, "limit rate over "+unit) {
			t.Errorf("rate %s: output lacks %q:\n%s", r, unit, out)
		}
	}
}

// TestDefusePlanUnreachableValkey: plan still prints its reading and
// proposals when the --valkey it was given cannot be reached, then exits 2
// with one line naming the address (a connection error, as the contract
// says); the password in the address is never shown.
func TestDefusePlanUnreachableValkey(t *testing.T) {
	state := filepath.Join(t.TempDir(), "defuse.json")
	for _, args := range [][]string{{}, {"--json"}} {
		code, out, msg := runDefuseCLI(t, append([]string{"defuse", "plan", "--valkey", "valkey://u:hunter2@127.0.0.1:1", "--window", "10ms", "--state", state}, args...)...)
		if code != exitUsage {
			t.Fatalf("%v: exit %d, want %d (msg %q)", args, code, exitUsage, msg)
		}
		if !strings.Contains(msg, "cannot reach Valkey at valkey://u:***@127.0.0.1:1") || strings.Contains(msg, "\n") {
			t.Errorf("%v: message %q, want one line naming the address", args, msg)
		}
		if !strings.Contains(out, "port 1") && !strings.Contains(out, `"port":1`) {
			t.Errorf("%v: stdout %q, want the plan printed first", args, out)
		}
		if strings.Contains(out+msg, "hunter2") {
			t.Errorf("%v: password shown: %q %q", args, out, msg)
		}
	}
}

// A dry run starts no restore process or timer: its text names none (it
// said "the detached restore process 0").
func TestRestoreByTextDryRun(t *testing.T) {
	for _, tt := range []struct {
		mt   defuse.Mitigation
		want string
	}{
		{defuse.Mitigation{RestoreBy: defuse.RestoreByProcess}, "by a detached restore process,"},
		{defuse.Mitigation{RestoreBy: defuse.RestoreByProcess, RestorePID: 4242}, "by the detached restore process 4242,"},
		{defuse.Mitigation{RestoreBy: defuse.RestoreBySystemdTimer}, "by a transient systemd timer,"},
		{defuse.Mitigation{RestoreBy: defuse.RestoreBySystemdTimer, RestoreUnit: "stormguard-restore-1.timer"}, "by the systemd timer stormguard-restore-1.timer,"},
	} {
		if got := restoreByText(tt.mt); !strings.Contains(got, tt.want) {
			t.Errorf("restoreByText(%s, pid %d, unit %q) = %q, want it to contain %q", tt.mt.RestoreBy, tt.mt.RestorePID, tt.mt.RestoreUnit, got, tt.want)
		}
	}
}
