package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// runCLI runs stormguard in-process and returns stdout, the error main
// would print (one line) and the exit code.
func runCLI(t *testing.T, args ...string) (stdout, msg string, code int, took time.Duration) {
	t.Helper()
	r := execCLI(t, args...)
	return r.Stdout, r.Msg, r.Code, r.Took
}

func TestSampleErrors(t *testing.T) {
	refused := "127.0.0.1:" + strconv.Itoa(sandboxtest.FreePort(t))
	tests := []struct {
		name   string
		args   []string
		want   string // in the message
		secret string // must not be in the message
	}{
		{"no port", []string{"sample", "--valkey", "localhost"}, "bad Valkey address", ""},
		{"bad port", []string{"sample", "--valkey", "valkey://u:hunter2@h:99999"}, "out of range", "hunter2"},
		{"bad scheme", []string{"sample", "--valkey", "http://h:1"}, "unknown scheme", ""},
		{"missing valkey flag", []string{"sample"}, "valkey", ""},
		{"missing netns", []string{"sample", "--valkey", "127.0.0.1:6379", "--netns", "/nonexistent/netns/blue"}, "open network namespace /nonexistent/netns/blue", ""},
		{"not a netns", []string{"sample", "--valkey", "127.0.0.1:6379", "--netns", "/etc/hostname"}, "not a namespace file", ""},
		{"connection refused", []string{"sample", "--valkey", "valkey://u:hunter2@" + refused}, "connection refused", "hunter2"},
		{"TLS files on a plain address", []string{"sample", "--valkey", "127.0.0.1:6379", "--cacert", "/etc/hostname"}, "need a TLS address", ""},
		{"missing CA file", []string{"sample", "--valkey", "valkeys://127.0.0.1:6379", "--cacert", "/nonexistent/ca.pem"}, "--cacert", ""},
		{"cert without key", []string{"sample", "--valkey", "valkeys://127.0.0.1:6379", "--cert", "/etc/hostname"}, "--cert needs --key", ""},
		{"TLS files without an address", []string{"check", "--sni", "x"}, "need --valkey", ""},
		{"TLS files for discovery", []string{"watch", "--cacert", "/etc/hostname"}, "need --valkey", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, msg, code, took := runCLI(t, tt.args...)
			if code != exitUsage {
				t.Fatalf("exit %d (%q), want %d", code, msg, exitUsage)
			}
			if !strings.Contains(msg, tt.want) {
				t.Fatalf("message %q lacks %q", msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Fatalf("message is not one line: %q", msg)
			}
			if tt.secret != "" && strings.Contains(msg, tt.secret) {
				t.Fatalf("password leaked: %q", msg)
			}
			if took > hangBound {
				t.Fatalf("took %s; must fail promptly", took)
			}
		})
	}
}

// TestSampleBinaryStderr checks the built binary's stderr contract:
// exactly one line naming the problem, exit status 2.
func TestSampleBinaryStderr(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := t.TempDir() + "/stormguard"
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	cmd := exec.Command(bin, "sample", "--valkey", "valkey://:pw-x@127.0.0.1:"+strconv.Itoa(sandboxtest.FreePort(t)))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2", err)
	}
	lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "stormguard: ") || !strings.Contains(lines[0], "connection refused") || strings.Contains(lines[0], "pw-x") {
		t.Fatalf("stderr %q; want one line 'stormguard: … connection refused' without the password", stderr.String())
	}
}
