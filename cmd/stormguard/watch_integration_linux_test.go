//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// waitFile polls path until it holds a line containing want.
func waitFile(t *testing.T, path, want string, timeout time.Duration, stderr *sandboxtest.Buffer) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	t.Fatalf("%s has no %q within %s:\n%s\nstderr:\n%s", path, want, timeout, b, stderr.String())
}

// TestIntegrationWatchSignals runs the built binary against a real Valkey:
// a storm is written to --events; the file is moved away (logrotate) and
// SIGHUP makes the next event go to a new file at the path; SIGTERM stops
// the agent with exit status 0 and every event line is complete JSON.
func TestIntegrationWatchSignals(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{"net.core.somaxconn": "16"}})
	dir := t.TempDir()
	bin := filepath.Join(dir, "stormguard")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	events := filepath.Join(dir, "events.jsonl")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", sandboxtest.FreePort(t))
	cmd := exec.Command(bin, "watch", "--valkey", sb.Addr(), "--netns", sb.NetNS, "--interval", "100ms",
		"--events", events, "--http", httpAddr)
	var stderr sandboxtest.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/api/v1/state")
		if err == nil {
			var v struct {
				Targets []struct{ State string } `json:"targets"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if len(v.Targets) == 1 && v.Targets[0].State == "calm" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch not serving a calm target within 20s; stderr:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A storm: Valkey frozen, 80 connects at once into a queue of 16.
	thaw := sandboxtest.Freeze(t, sb)
	fds, err := sb.SYNBurst(80)
	if err != nil {
		t.Fatal(err)
	}
	waitFile(t, events, `"to":"storm"`, 10*time.Second, &stderr)
	thaw()
	for _, fd := range fds {
		unix.Close(fd)
	}

	// logrotate: move the file away, SIGHUP; the next event (recovering,
	// after 5 s without drops) must go to a new file at the path.
	if err := os.Rename(events, events+".1"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFile(t, events, `"to":"recovering"`, 20*time.Second, &stderr)
	if !strings.Contains(stderr.String(), "SIGHUP") {
		t.Errorf("no SIGHUP line in the log:\n%s", stderr.String())
	}

	beforeTERM := len(stderr.String())
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("after SIGTERM: %v, want exit status 0; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("watch did not exit within 10s of SIGTERM; stderr:\n%s", stderr.String())
	}
	// Every line is one complete JSON event (state changes, and the
	// agent's own: targets, checklist at onset, defuse); nothing torn.
	states := 0
	for _, p := range []string{events + ".1", events} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var ev map[string]any
			if err := json.Unmarshal([]byte(l), &ev); err != nil || ev["type"] == nil || ev["time"] == nil {
				t.Errorf("%s line %d: %q (%v), want a JSON event with type and time", p, i+1, l, err)
				continue
			}
			if ev["type"] == "state" {
				states++
				if ev["from"] == nil || ev["to"] == nil || ev["target"] == nil {
					t.Errorf("%s line %d: state event without from/to/target: %q", p, i+1, l)
				}
			}
		}
	}
	if states == 0 {
		t.Error("no state event in the events files")
	}
	if !strings.Contains(stderr.String(), "stopped") {
		t.Errorf("no 'stopped' line in the log:\n%s", stderr.String())
	}
	// A clean shutdown is not an error (it once logged the accept-queue
	// poller's closed clock as one). Storms are logged at ERROR, so only
	// what came after the SIGTERM counts.
	if after := stderr.String()[beforeTERM:]; strings.Contains(after, "level=ERROR") {
		t.Errorf("ERROR in the log after SIGTERM:\n%s", after)
	}
}
