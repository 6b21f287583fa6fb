package defuse

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
)

// The systemd restore path cannot run on a machine whose PID 1 is not
// systemd (this project's CI), so these tests pin what stormguard hands to
// systemd: the exact systemd-run and systemctl command lines, run through
// fake commands on PATH that record their arguments.

func TestSystemdRunArgs(t *testing.T) {
	now := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	mt := Mitigation{ID: "a1b2c3", Action: AcceptCap, Expires: now.Add(90*time.Second + 250*time.Millisecond)}
	tests := []struct {
		name   string
		mt     Mitigation
		secret string
		want   []string
	}{
		{"with password file", mt, "/var/lib/stormguard/.restore-a1b2c3.secret", []string{
			"--quiet", "--collect", "--unit=stormguard-restore-a1b2c3",
			"--description=stormguard: restore mitigation a1b2c3 (accept-cap) at its TTL",
			"--on-active=90.250s", "--timer-property=AccuracySec=100ms",
			"--property=Type=oneshot", "--setenv=STORMGUARD_DEFUSE_RESTORE=1",
			"--", "/usr/bin/stormguard", "defuse", "restore-due",
			"--state", "/var/lib/stormguard/defuse.json", "--id", "a1b2c3",
			"--password-file", "/var/lib/stormguard/.restore-a1b2c3.secret",
		}},
		{"no password, already due", Mitigation{ID: "d4", Action: Backlog, Expires: now.Add(-time.Second)}, "", []string{
			"--quiet", "--collect", "--unit=stormguard-restore-d4",
			"--description=stormguard: restore mitigation d4 (backlog) at its TTL",
			"--on-active=0.000s", "--timer-property=AccuracySec=100ms",
			"--property=Type=oneshot", "--setenv=STORMGUARD_DEFUSE_RESTORE=1",
			"--", "/usr/bin/stormguard", "defuse", "restore-due",
			"--state", "/var/lib/stormguard/defuse.json", "--id", "d4",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := systemdRunArgs("/usr/bin/stormguard", "/var/lib/stormguard/defuse.json", tt.mt, tt.secret, now)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("systemd-run args\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// fakeCommand puts an executable name on PATH that appends its arguments
// (one per line, then a blank line) to a log and exits with code.
func fakeCommand(t *testing.T, dir, name string, code int) string {
	t.Helper()
	log := filepath.Join(dir, name+".args")
	script := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> " + log + "\necho >> " + log + "\n"
	if code != 0 {
		script += "echo 'Failed to start transient timer unit' >&2\nexit " + strconv.Itoa(code) + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return log
}

func readArgs(t *testing.T, log string) [][]string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var calls [][]string
	for _, c := range strings.Split(strings.TrimSuffix(string(b), "\n\n"), "\n\n") {
		calls = append(calls, strings.Split(c, "\n"))
	}
	return calls
}

func TestScheduleSystemdInvocation(t *testing.T) {
	bin := t.TempDir()
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	state := filepath.Join(t.TempDir(), "defuse.json")
	now := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	m := &Manager{StatePath: state, Now: func() time.Time { return now }, Valkey: addr.Addr{Host: "127.0.0.1", Port: 6379, Password: "s3cret"}}
	mt := &Mitigation{ID: "e5f6", Action: AcceptCap, Valkey: "127.0.0.1:6379", Expires: now.Add(30 * time.Second)}

	runLog := fakeCommand(t, bin, "systemd-run", 0)
	unit, err := m.scheduleSystemd("/usr/bin/stormguard", mt)
	if err != nil {
		t.Fatal(err)
	}
	if unit != "stormguard-restore-e5f6.timer" {
		t.Errorf("unit %q", unit)
	}
	secret := secretPath(state, "e5f6")
	calls := readArgs(t, runLog)
	if want := systemdRunArgs("/usr/bin/stormguard", state, *mt, secret, now); len(calls) != 1 || !reflect.DeepEqual(calls[0], want) {
		t.Fatalf("systemd-run called with %q, want %q", calls, want)
	}
	if strings.Contains(strings.Join(calls[0], " "), "s3cret") {
		t.Fatal("the password is on systemd-run's command line")
	}
	fi, err := os.Stat(secret)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "s3cret" || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file %q mode %v, want the password, 0600", b, fi.Mode().Perm())
	}

	// Revert before the TTL: the timer and its service are stopped and
	// the secret file removed.
	ctlLog := fakeCommand(t, bin, "systemctl", 0)
	mt.RestoreUnit = unit
	m.cancelRestore(*mt)
	if calls := readArgs(t, ctlLog); len(calls) != 1 || !reflect.DeepEqual(calls[0], []string{"stop", "stormguard-restore-e5f6.timer", "stormguard-restore-e5f6.service"}) {
		t.Fatalf("systemctl called with %q", calls)
	}
	if _, err := os.Stat(secret); !os.IsNotExist(err) {
		t.Errorf("secret file left after cancel: %v", err)
	}

	// systemd-run refuses: an error quoting it, and no secret left behind.
	fakeCommand(t, bin, "systemd-run", 1)
	if _, err := m.scheduleSystemd("/usr/bin/stormguard", mt); err == nil || !strings.Contains(err.Error(), "Failed to start transient timer unit") {
		t.Fatalf("failing systemd-run: err %v", err)
	}
	if _, err := os.Stat(secret); !os.IsNotExist(err) {
		t.Errorf("secret file left after a failed systemd-run: %v", err)
	}
}

// The unit's command reads the password from --password-file and removes
// the file; a state directory that is gone means nothing to restore.
func TestRestoreMainPasswordFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, ".restore-x.secret")
	if err := os.WriteFile(secret, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--state", filepath.Join(dir, "gone", "defuse.json"), "--id", "x", "--password-file", secret}
	if pw, err := restoreSecret(args); err != nil || pw != "pw" {
		t.Fatalf("restoreSecret = %q, %v", pw, err)
	}
	if code := restoreMain(args); code != 0 {
		t.Fatalf("restore-due exit %d", code)
	}
	if _, err := os.Stat(secret); !os.IsNotExist(err) {
		t.Errorf("password file left after restore-due: %v", err)
	}
	if code := restoreMain([]string{"--id", "x"}); code != 2 {
		t.Errorf("restore-due without --state: exit %d, want 2", code)
	}
}
