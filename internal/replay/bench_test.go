package replay

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/journal"
	"github.com/stormguard/stormguard/internal/sample"
)

// BenchmarkReplay15Min replays a 15-minute capture sampled every 100 ms
// throughout (9,000 samples: the agent's fast cadence all the time, the
// worst case; at the default 500 ms it is 1,800), gzip-compressed like the
// corpus, from disk: read + decode + detect, as `stormguard replay` does.
// go test -run '^$' -bench Replay15Min -benchmem ./internal/replay
func BenchmarkReplay15Min(b *testing.B) {
	n := int(15 * time.Minute / (100 * time.Millisecond))
	p := filepath.Join(b.TempDir(), "capture-15m.jsonl.gz")
	if err := os.WriteFile(p, gz(synth("127.0.0.1:6379", t0, 100*time.Millisecond, n, n/2)), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		rec, err := ReadCapture(p)
		if err != nil {
			b.Fatal(err)
		}
		if res := Run(detect.Config{}, rec); res.Samples != n {
			b.Fatalf("replayed %d samples, want %d", res.Samples, n)
		}
	}
}

// BenchmarkReplay15MinRecorded does the same with real samples: a corpus
// recording (every field the agent fills, at the agent's real cadence)
// tiled end to end until it spans 15 minutes.
// go test -run '^$' -bench Replay15MinRecorded -benchmem ./internal/replay
func BenchmarkReplay15MinRecorded(b *testing.B) {
	src, err := ReadCapture("../corpus/testdata/storm-relapse.jsonl.gz")
	if err != nil {
		b.Skipf("no corpus recording: %v", err)
	}
	var samples []*sample.Sample
	for _, r := range src.Records {
		if r.Sample != nil {
			samples = append(samples, r.Sample)
		}
	}
	span := src.Span() + 500*time.Millisecond
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	n := 0
	for shift := time.Duration(0); shift < 15*time.Minute; shift += span {
		for _, s := range samples {
			c := *s
			c.Time = s.Time.Add(shift)
			_ = enc.Encode(journal.Line{Kind: "sample", Target: c.Target, Time: c.Time, Sample: &c})
			n++
		}
	}
	p := filepath.Join(b.TempDir(), "capture-15m.jsonl.gz")
	if err := os.WriteFile(p, gz(buf.Bytes()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		rec, err := ReadCapture(p)
		if err != nil {
			b.Fatal(err)
		}
		if res := Run(detect.Config{}, rec); res.Samples != n {
			b.Fatalf("replayed %d samples, want %d", res.Samples, n)
		}
	}
	b.ReportMetric(float64(n), "samples")
}
