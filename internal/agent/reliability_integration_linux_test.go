//go:build linux

package agent_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/agent"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/journal"
	"github.com/stormguard/stormguard/internal/notify"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/serve"
)

// checkNoGaps fails when two consecutive samples are further apart than
// gapBound: the sampler must never stall, whatever happens downstream.
func checkNoGaps(t *testing.T, ss []*sample.Sample, interval time.Duration, what string) {
	t.Helper()
	for i := 1; i < len(ss); i++ {
		if gap := ss[i].Time.Sub(ss[i-1].Time); gap > gapBound(interval) {
			t.Errorf("%s: gap of %s between samples at %s and %s", what, gap, ss[i-1].Time.Format("15:04:05.000"), ss[i].Time.Format("15:04:05.000"))
		}
	}
}

// stormUntil freezes Valkey and bursts connections until the agent says
// storm (or 8 s pass).
func stormUntil(t *testing.T, sb *sandbox.Sandbox, rec *watchRec) {
	t.Helper()
	t0 := time.Now()
	freezeStorm(t, sb, 80, 300*time.Millisecond, 8*time.Second, func() bool {
		_, ok := rec.firstTo(detect.Storm, t0)
		return ok
	})
	if _, ok := rec.firstTo(detect.Storm, t0); !ok {
		t.Fatalf("the agent did not report a storm within 8s of an accept-queue overflow")
	}
}

// quick is a detector config whose quiet periods are short, so a storm
// passes through recovering to calm within seconds in a test.
var quick = detect.Config{StormQuiet: time.Second, SurgeQuiet: 2 * time.Second, CalmQuiet: 2 * time.Second}

// TestIntegrationSurvivesNamespaceRemoval: the target's namespace is
// deleted under the agent. The agent keeps sampling (the target reports
// errors), does not crash, and its goroutine count stays flat.
func TestIntegrationSurvivesNamespaceRemoval(t *testing.T) {
	sandboxtest.Require(t)
	sb, err := sandbox.New(context.Background(), sandbox.Options{})
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	// Close fails to delete the namespace this test already deleted;
	// that is expected, so its error is not reported.
	t.Cleanup(func() { _ = sb.Close() })
	const interval = 100 * time.Millisecond
	rec, hub := runAgent(t, sb, interval, nil)
	if err := sb.StopValkey(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "del", sb.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	gone := time.Now()
	time.Sleep(2 * time.Second) // let the agent notice and reconnect attempts start
	g1 := goroutinesSettled()
	time.Sleep(4 * time.Second)
	g2 := goroutinesSettled()
	ss := rec.samplesSince(gone)
	if len(ss) < int(6*time.Second/gapBound(interval)) {
		t.Fatalf("only %d samples in 6s after the namespace was removed", len(ss))
	}
	checkNoGaps(t, ss, interval, "after namespace removal")
	last := ss[len(ss)-1]
	if last.Valkey != nil || last.Errors["valkey"] == "" {
		t.Errorf("last sample: valkey %v, errors %v; want the valkey part missing with a reason", last.Valkey, last.Errors)
	}
	if g2 > g1+5 {
		t.Errorf("goroutines grew from %d to %d in 4s after the namespace was removed", g1, g2)
	}
	if v := hub.Views(); len(v) != 1 {
		t.Errorf("hub has %d targets, want 1", len(v))
	}
	t.Logf("%d samples after removal, goroutines %d → %d, last errors %v", len(ss), g1, g2, last.Errors)
}

// TestIntegrationJournalDiskFull: the journal directory and events file are
// on a 64 KiB tmpfs. A storm capture fills it; the agent keeps sampling and
// serving, counts the failed writes, and once space is freed writes resume
// and every file is still valid JSON lines (no torn line).
func TestIntegrationJournalDiskFull(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{"net.core.somaxconn": "16"}})
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "sgtest", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	const interval = 100 * time.Millisecond
	jr := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), EventsPath: filepath.Join(dir, "events.jsonl"), Interval: interval})
	t.Cleanup(func() { jr.Close() })
	rec, hub := runAgent(t, sb, interval, func(o *agent.Options) { o.Journal = jr; o.Detector = quick })
	srv := httptest.NewServer(serve.Handler(hub, serve.Options{}))
	defer srv.Close()
	// Ten seconds of history: the capture starts with it (pre-onset), so
	// it alone needs more than 64 KiB.
	time.Sleep(10 * time.Second)
	t0 := time.Now()
	stormUntil(t, sb, rec)
	deadline := time.Now().Add(10 * time.Second)
	for jr.WriteErrors() == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if jr.WriteErrors() == 0 {
		t.Fatal("no journal write failed on a 64 KiB filesystem")
	}
	errs := jr.WriteErrors()
	time.Sleep(time.Second)
	resp, err := http.Get(srv.URL + "/api/v1/state")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/api/v1/state with the disk full: %v %v", resp, err)
	}
	resp.Body.Close()
	if jr.WriteErrors() <= errs {
		t.Errorf("write errors stopped growing (%d) while the capture should still be failing", errs)
	}

	// Free space: grow the filesystem.
	if out, err := exec.Command("mount", "-o", "remount,size=16m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	freed := time.Now()
	rec.waitState(t, detect.Calm, 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	checkNoGaps(t, rec.samplesSince(t0), interval, "disk full")

	events := readLines(t, filepath.Join(dir, "events.jsonl"))
	var last map[string]any
	if err := json.Unmarshal([]byte(events[len(events)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if last["to"] != "calm" {
		t.Errorf("last event after space was freed: %v, want the return to calm", last["to"])
	}
	caps, _ := filepath.Glob(filepath.Join(dir, "journal", "capture-*.jsonl"))
	if len(caps) != 1 {
		t.Fatalf("captures: %v", caps)
	}
	lines, err := journal.ReadCapture(caps[0])
	if err != nil {
		t.Fatalf("capture unreadable after disk full: %v", err)
	}
	var after int
	for _, l := range lines {
		if l.Kind == "sample" && l.Time.After(freed) {
			after++
		}
	}
	if after == 0 || lines[len(lines)-1].Kind != "end" {
		t.Errorf("capture: %d samples after space was freed, last line %q; want samples and the end", after, lines[len(lines)-1].Kind)
	}
	t.Logf("%d write errors while full; after: %d event lines, capture %d lines (%d samples after freeing)", errs, len(events), len(lines), after)
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !json.Valid([]byte(l)) {
			t.Fatalf("%s line %d is not JSON: %q", path, i+1, l)
		}
		out = append(out, l)
	}
	return out
}

// TestIntegrationWebhookDown: the webhook hangs and Alertmanager answers
// 500; a storm and its recovery are detected and sampled without a gap, the
// receivers were tried, and the agent stops promptly.
func TestIntegrationWebhookDown(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{Sysctls: map[string]string{"net.core.somaxconn": "16"}})
	release := make(chan struct{})
	var hung, failed atomic.Int64
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	fail := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		failed.Add(1)
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }); hang.Close(); fail.Close() })
	nctx, ncancel := context.WithCancel(context.Background())
	nt := notify.New(nctx, notify.Options{WebhookURL: hang.URL, AlertmanagerURL: fail.URL, Timeout: 2 * time.Second})
	t.Cleanup(func() { ncancel(); <-nt.Done() })

	const interval = 100 * time.Millisecond
	rec, _ := runAgent(t, sb, interval, func(o *agent.Options) { o.Notifier = nt; o.Detector = quick })
	t0 := time.Now()
	stormUntil(t, sb, rec)
	rec.waitState(t, detect.Calm, 30*time.Second)
	checkNoGaps(t, rec.samplesSince(t0), interval, "receivers down")
	deadline := time.Now().Add(15 * time.Second)
	for (hung.Load() == 0 || failed.Load() == 0) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if hung.Load() == 0 || failed.Load() == 0 {
		t.Errorf("receivers tried: webhook %d, alertmanager %d; want both", hung.Load(), failed.Load())
	}
	sent, nfailed, dropped := nt.Stats()
	t.Logf("webhook requests %d (hung), alertmanager requests %d (500); notifier sent %d failed %d dropped %d",
		hung.Load(), failed.Load(), sent, nfailed, dropped)
}
