package replay

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
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
