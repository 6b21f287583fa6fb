package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// mainProc is this test binary started as the stormguard command (see
// TestMain), the way outside automation runs it: no terminal, stdin
// /dev/null.
type mainProc struct {
	cmd            *exec.Cmd
	stdout, stderr *sandboxtest.Buffer
	done           chan error
}

func startMain(t *testing.T, args ...string) *mainProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &mainProc{stdout: &sandboxtest.Buffer{}, stderr: &sandboxtest.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(exe, args...)
	p.cmd.Env = append(os.Environ(), "STORMGUARD_TEST_MAIN=1")
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// waitOutput polls until stdout contains want, or fails after hangBound.
func (p *mainProc) waitOutput(t *testing.T, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(p.stdout.String(), want) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("exited (%v) before printing %q; stderr: %s", err, want, p.stderr.String())
		case <-ctx.Done():
			t.Fatalf("no %q on stdout after %s; stderr: %s", want, hangBound, p.stderr.String())
		case <-tick.C:
		}
	}
}

// exit waits for the process to end and returns its exit code; a process
// still running after hangBound fails the test.
func (p *mainProc) exit(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(hangBound):
		t.Fatalf("still running %s after the signal (hang); stderr: %s", hangBound, p.stderr.String())
		return -1
	}
}

// TestTopWithoutTerminalEndsOnSignal: top started by a script (stdin
// /dev/null, stdout a pipe) shows the target in plain text and ends with exit 0 on
// SIGINT and on SIGTERM. It used to exit 2 at once (Bubble Tea could not
// poll /dev/null for keys), and to hang after SIGTERM.
func TestTopWithoutTerminalEndsOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startMain(t, "top", "--valkey", "127.0.0.1:1", "--interval", "50ms")
			p.waitOutput(t, "127.0.0.1:1")
			// A pipe gets plain frames, not the full-screen UI's
			// alternate screen and cursor movement.
			if out := p.stdout.String(); strings.Contains(out, "\x1b[?1049h") || strings.Contains(out, "\x1b[H") {
				t.Fatalf("stdout to a pipe holds terminal control sequences: %q", out)
			}
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := p.exit(t); code != 0 {
				t.Fatalf("exit %d after %s, want 0; stderr: %s", code, sig, p.stderr.String())
			}
		})
	}
}

// TestContractBadInputOneLine runs the binary as automation does with bad
// input on every command: exit 2 and exactly one line on stderr that
// names what was wrong, no usage text, no stack trace. (The per-command
// tests check the messages in-process; this checks what main prints.)
func TestContractBadInputOneLine(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/file" // a regular file: nothing can be created under it
	if err := os.WriteFile(file, []byte("not json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v := "127.0.0.1:1"
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"sample", "--valkey", v, "--interval", "-1s"}, "--interval"},
		{[]string{"sample", "--valkey", v, "--count", "0"}, "--count"},
		{[]string{"sample", "--valkey", v, "--bogus"}, "--bogus"},
		{[]string{"sample"}, "valkey"},
		{[]string{"sample", "--valkey", "notanaddr"}, "notanaddr"},
		{[]string{"sample", "--valkey", "valkey://u:hunter2@h:99999"}, "bad Valkey address"},
		{[]string{"sample", "--valkey", v, "--password-file", dir + "/missing"}, "missing"},
		{[]string{"sample", "--valkey", v, "--netns", dir + "/missing"}, "missing"},
		{[]string{"sample", "--valkey", "valkeys://127.0.0.1:1", "--cacert", dir + "/missing"}, "--cacert"},
		{[]string{"watch", "--interval", "-1s", "--http", ""}, "--interval"},
		{[]string{"watch", "--http", "notanaddr"}, "--http"},
		{[]string{"watch", "--valkey", v, "--http", "", "--events", file + "/ev.jsonl"}, "--events"},
		{[]string{"watch", "--valkey", v, "--http", "", "--journal", file + "/j"}, "--journal"},
		{[]string{"watch", "--valkey", v, "--web.config.file", dir + "/missing"}, "--web.config.file"},
		{[]string{"top", "--interval", "-1s"}, "--interval"},
		{[]string{"top", "--agent", "::bad"}, "--agent"},
		{[]string{"report", "--journal", dir + "/missing", "--out", dir + "/r.html"}, "missing"},
		{[]string{"report", "--journal", dir}, "out"},
		{[]string{"replay"}, "--journal"},
		{[]string{"replay", "--capture", file}, file + " line 1"},
		{[]string{"replay", "--capture", dir + "/missing"}, "missing"},
		{[]string{"check", "--valkey", v, "--format", "xml"}, "xml"},
		{[]string{"check", "--valkey", v, "--fail-on", "never"}, "--fail-on"},
		{[]string{"backoff", "--strategy", "nope"}, "nope"},
		{[]string{"backoff", "--strategy", "glide", "--attempts", "0"}, "--attempts"},
		{[]string{"storm", "--target", v, "--clients", "0", "--strategy", "immediate"}, "--clients"},
		{[]string{"storm", "--spawn", "--strategy", "immediate"}, "give --clients N"},
		{[]string{"storm", "--spawn", "--hosts", "0", "--clients", "5", "--strategy", "immediate"}, "--hosts"},
		{[]string{"storm", "--spawn", "--hosts", "2", "--rtt", "-1s", "--clients", "5", "--strategy", "immediate"}, "--rtt"},
		{[]string{"simulate", "--clients", "0", "--strategy", "glide"}, "--clients"},
		{[]string{"simulate", "--clients", "10", "--strategy", "glide", "--rtt", "-1s"}, "negative"},
		{[]string{"simulate", "--clients", "10", "--strategy", "glide", "--calibrate", file}, "--calibrate"},
		{[]string{"defuse", "apply", "--action", "ratelimit-syn", "--port", "6379", "--rate", "20/s"}, "--ttl"},
		{[]string{"defuse", "apply", "--action", "nope", "--port", "6379", "--ttl", "60s"}, "nope"},
		{[]string{"defuse", "plan", "--valkey", "bad"}, "bad"},
		{[]string{"nosuchcommand"}, "nosuchcommand"},
		// A stray argument is named as one (cobra said "unknown command").
		{[]string{"sample", "127.0.0.1:6379"}, `unexpected argument "127.0.0.1:6379"`},
		{[]string{"defuse", "plan", "x"}, `unexpected argument "x"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			p := startMain(t, tt.args...)
			code := p.exit(t)
			stderr := p.stderr.String()
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr: %s", code, exitUsage, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "stormguard: ") || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("stderr %q: want one line \"stormguard: …\" naming %q", stderr, tt.want)
			}
			if strings.Contains(stderr, "hunter2") {
				t.Fatalf("stderr shows the password: %q", stderr)
			}
		})
	}
}

// TestPasswordNotInProcessArgs: a password given in the address is not in
// /proc/PID/cmdline of a running stormguard, nor in its log. (The command
// still has it: TestHideArgvPasswords.)
func TestPasswordNotInProcessArgs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/cmdline is Linux")
	}
	p := startMain(t, "watch", "--valkey", "valkey://u:hunter2@127.0.0.1:1", "--http", "", "--interval", "50ms", "--ebpf=false")
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	for !strings.Contains(p.stderr.String(), "watching target") {
		select {
		case <-ctx.Done():
			t.Fatalf("watch did not start: %s", p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cmdline), "hunter2") || !strings.Contains(string(cmdline), "valkey://u:*******@127.0.0.1:1") {
		t.Fatalf("/proc/PID/cmdline = %q, want the password masked", bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exit(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM; stderr: %s", code, p.stderr.String())
	}
	if strings.Contains(p.stderr.String(), "hunter2") {
		t.Fatalf("log shows the password: %s", p.stderr.String())
	}
}
