package corpus

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
)

// enforceAll turns on every check of the corpus: 0 false surge/storm on
// each benign recording, latency percentiles, surge before the first drop
// of slow builds. It is on since the detector passes them; turning it off
// (only missed storms fail, the rest is logged) is for a detector change
// in progress, never for a landing.
const enforceAll = true

// Targets of the issue: first drop → storm event.
const (
	maxP50 = 200 * time.Millisecond
	maxP95 = 500 * time.Millisecond
)

// TestCorpus replays every recording in testdata through the same code as
// `stormguard replay`, with the default detector settings, and checks it
// against its label. The table it logs is the one in docs/benchmarks.md:
//
//	go test -count=1 -run TestCorpus -v ./internal/corpus
func TestCorpus(t *testing.T) {
	strict := enforceAll || os.Getenv("STORMGUARD_CORPUS_STRICT") == "1"
	entries, err := List("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var nb, ns int
	for _, e := range entries {
		if e.Label.Kind == Benign {
			nb++
		} else {
			ns++
		}
	}
	if nb < 10 || ns < 8 {
		t.Fatalf("corpus has %d benign and %d storm recordings; want at least 10 and 8", nb, ns)
	}
	var outs []Outcome
	for _, e := range entries {
		o, err := Score(e, detect.Config{})
		if err != nil {
			t.Fatalf("%s: %v", e.Path, err)
		}
		outs = append(outs, o)
	}
	sum := Summarize(outs)
	var b strings.Builder
	sum.WriteTable(&b)
	t.Logf("corpus replay, default detector settings (strict=%v):\n%s", strict, b.String())

	for _, o := range outs {
		if o.SurgeBeforeDrop != (o.Lead != nil && *o.Lead > 0) {
			t.Errorf("%s: surge before the first drop %v but lead %v", o.Label.Name, o.SurgeBeforeDrop, o.Lead)
		}
		for _, f := range o.Failures(0) {
			switch {
			case strings.HasPrefix(f, "missed"):
				t.Errorf("%s: %s", o.Label.Name, f)
			case strict:
				t.Errorf("%s: %s", o.Label.Name, f)
			default:
				t.Logf("not yet enforced: %s: %s", o.Label.Name, f)
			}
		}
	}
	if sum.P50 > maxP50 || sum.P95 > maxP95 {
		msg := "first drop → storm p50 %s (want ≤ %s), p95 %s (want ≤ %s)"
		if strict {
			t.Errorf(msg, sum.P50, maxP50, sum.P95, maxP95)
		} else {
			t.Logf("not yet enforced: "+msg, sum.P50, maxP50, sum.P95, maxP95)
		}
	}
}

// TestListRejectsIncompleteCorpus: a recording without its label (or the
// reverse) is an error, not a silently smaller corpus.
func TestListRejectsIncompleteCorpus(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/x.jsonl.gz", []byte{}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := List(dir); err == nil || !strings.Contains(err.Error(), "1 recordings but 0 labels") {
		t.Errorf("err = %v", err)
	}
}
