//go:build linux

package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationCheckWithoutRoot runs check as user nobody against a
// valkey-server on loopback: what needs privileges (other users' /proc/PID/fd,
// ctnetlink) is reported with the reason, and the rest is still checked.
func TestIntegrationCheckWithoutRoot(t *testing.T) {
	sandboxtest.Require(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		sandboxtest.SkipOrFail(t, "setpriv (util-linux) not installed")
	}
	bin, err := sandbox.ValkeyBinary()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "valkey.log"))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("valkey-server on %s did not start: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A copy of this test binary that user nobody can execute.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "stormguard")
	if err := copyFile(self, exe); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		exe, "check", "--valkey", addr, "--format", "json", "--window", "100ms")
	cmd.Env = append(os.Environ(), "STORMGUARD_TEST_MAIN=1")
	cmd.Dir = dir
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code == exitUsage {
		t.Fatalf("exit 2 as nobody: %s\n%s", ee.Stderr, out)
	}
	doc := parseCheck(t, string(out))
	byID := map[string]string{}
	for _, f := range doc.Findings {
		byID[f.ID] = f.Severity + ": " + f.Evidence
		t.Logf("%s %s", f.ID, byID[f.ID])
	}
	// The fd limit is still checked: INFO process_id stands in for the
	// /proc/PID/fd scan nobody may not do, and /proc/PID/limits is world-readable.
	if fd := byID["fd-limit-below-maxclients"]; !strings.HasPrefix(fd, "ok: ") || !strings.Contains(fd, "found via INFO process_id") {
		t.Errorf("fd-limit-below-maxclients as nobody: %q", fd)
	}
	if ct, ok := byID["conntrack-tracks-valkey-port"]; ok && !strings.HasPrefix(ct, "info: ") {
		t.Errorf("conntrack-tracks-valkey-port as nobody: %q, want info with the reason", ct)
	} else if ok && !strings.Contains(ct, "permission") && !strings.Contains(ct, "not permitted") {
		t.Errorf("conntrack-tracks-valkey-port reason %q does not mention permission", ct)
	}
	if !strings.HasPrefix(byID["somaxconn-truncates-backlog"], "ok: ") && !strings.HasPrefix(byID["somaxconn-truncates-backlog"], "warning: ") {
		t.Errorf("sysctls unread as nobody: %q", byID["somaxconn-truncates-backlog"])
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
