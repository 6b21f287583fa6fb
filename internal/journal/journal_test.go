package journal

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

func mk(target string, t time.Time) *sample.Sample {
	return &sample.Sample{Time: t, Target: target, Errors: map[string]string{}}
}

func TestRing(t *testing.T) {
	r := NewRing(3)
	t0 := time.Unix(0, 0)
	for i := 0; i < 5; i++ {
		r.Add(mk("a", t0.Add(time.Duration(i)*time.Second)))
	}
	got := r.Since(time.Time{})
	if len(got) != 3 || got[0].Time.Unix() != 2 || got[2].Time.Unix() != 4 {
		t.Fatalf("ring kept %v", got)
	}
	if n := len(r.Since(t0.Add(3 * time.Second))); n != 1 {
		t.Fatalf("Since(3s) = %d samples, want 1", n)
	}
}

func TestCaptureWindow(t *testing.T) {
	dir := t.TempDir()
	j := Open(Options{Dir: dir, EventsPath: filepath.Join(dir, "events.jsonl"), Interval: time.Second, PreOnset: 10 * time.Second})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 30; i++ { // 30 s of calm
		j.Sample(mk("t1", t0.Add(time.Duration(i)*time.Second)))
	}
	onset := t0.Add(30 * time.Second)
	j.Event("t1", onset, "storm", map[string]any{"type": "state", "to": "storm"})
	for i := 30; i < 35; i++ {
		j.Sample(mk("t1", t0.Add(time.Duration(i)*time.Second)))
		j.Sample(mk("other", t0.Add(time.Duration(i)*time.Second)))
	}
	j.Event("t1", t0.Add(35*time.Second), "calm", map[string]any{"type": "state", "to": "calm"})
	j.Sample(mk("t1", t0.Add(36*time.Second))) // after calm: not captured
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "capture-*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("captures: %v", files)
	}
	lines, err := ReadCapture(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var samples, events int
	for _, l := range lines {
		switch l.Kind {
		case "sample":
			samples++
			if l.Target != "t1" {
				t.Errorf("capture holds another target's sample")
			}
			if l.Time.Before(onset.Add(-10*time.Second)) || l.Time.After(t0.Add(35*time.Second)) {
				t.Errorf("sample at %v outside window", l.Time)
			}
		case "event":
			events++
		}
	}
	// 9 pre-onset samples (20 < t < 30 → 21..29) plus 5 during the storm.
	if samples != 14 || events != 2 || lines[0].Kind != "capture" || lines[len(lines)-1].Kind != "end" {
		t.Fatalf("capture: %d samples, %d events, first %q, last %q", samples, events, lines[0].Kind, lines[len(lines)-1].Kind)
	}
	ev, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	if n := strings.Count(string(ev), "\n"); n != 2 {
		t.Fatalf("events file has %d lines", n)
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	r := &RotatingFile{Path: filepath.Join(dir, "e.jsonl"), MaxBytes: 100, Keep: 2}
	line, _ := json.Marshal(map[string]string{"x": strings.Repeat("a", 30)})
	for i := 0; i < 20; i++ {
		if err := r.WriteLine(line); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	for _, p := range []string{"e.jsonl", "e.jsonl.1", "e.jsonl.2"} {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil || st.Size() > 100 {
			t.Errorf("%s: %v size %v", p, err, st)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "e.jsonl.3")); !os.IsNotExist(err) {
		t.Error("kept more than 2 rotated files")
	}
}

func TestDiskTroubleDoesNotStop(t *testing.T) {
	// A path under a regular file can never be created: every write fails,
	// the journal counts it, and Sample/Event keep returning.
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	os.WriteFile(blocker, nil, 0o644)
	j := Open(Options{Dir: filepath.Join(blocker, "sub"), EventsPath: filepath.Join(blocker, "ev.jsonl")})
	for i := 0; i < 3; i++ {
		j.Sample(mk("t", time.Now()))
		j.Event("t", time.Now(), "storm", map[string]string{"type": "state"})
	}
	if j.WriteErrors() == 0 {
		t.Fatal("write errors not counted")
	}
	if got := len(j.Recent("t", time.Time{})); got != 3 {
		t.Fatalf("in-memory recorder lost samples: %d", got)
	}
}
