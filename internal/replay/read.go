package replay

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/stormguard/stormguard/internal/journal"
	"github.com/stormguard/stormguard/internal/sample"
)

// KindRestart marks, inside a recording, the point where the agent that
// recorded it restarted: replay starts a fresh detector for that target
// there, as the new agent did. The journal never writes it; the corpus
// recorder does (the "agent restart" shapes).
const KindRestart = "restart"

// maxLine bounds one JSON line (a sample is ~2 KB; events with evidence a
// few KB). A longer line is malformed input, not a reason to allocate.
const maxLine = 4 << 20

// Record is one entry of a recording in order: a sample, or a restart.
type Record struct {
	Target  string
	Time    time.Time
	Sample  *sample.Sample // nil for a restart
	Restart bool
	// File and Line locate the record for messages.
	File string
	Line int
}

// Recording is a recorded sample stream.
type Recording struct {
	// Files read, in order.
	Files   []string
	Records []Record
}

// Samples counts the sample records.
func (r *Recording) Samples() int {
	n := 0
	for _, rec := range r.Records {
		if rec.Sample != nil {
			n++
		}
	}
	return n
}

// Span is the time between the first and the last sample.
func (r *Recording) Span() time.Duration {
	var first, last time.Time
	for _, rec := range r.Records {
		if rec.Sample == nil {
			continue
		}
		if first.IsZero() {
			first = rec.Time
		}
		last = rec.Time
	}
	return last.Sub(first)
}

// Targets lists the targets in order of first appearance.
func (r *Recording) Targets() []string {
	seen := map[string]bool{}
	var out []string
	for _, rec := range r.Records {
		if !seen[rec.Target] {
			seen[rec.Target] = true
			out = append(out, rec.Target)
		}
	}
	return out
}

// ReadCapture reads one capture file (capture-*.jsonl, optionally gzip
// compressed, detected by its magic bytes).
func ReadCapture(path string) (*Recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read recording: %w", err)
	}
	defer f.Close()
	recs, err := Decode(f, path)
	if err != nil {
		return nil, err
	}
	return &Recording{Files: []string{path}, Records: recs}, nil
}

// ReadJournal reads every capture file in a `watch --journal` directory
// (capture-*.jsonl and capture-*.jsonl.gz) and merges them per target in
// time order. Captures overlap (each starts with up to a minute of samples
// from before its onset, which may repeat the end of the previous one): a
// sample not newer than the target's previous one is dropped.
func ReadJournal(dir string) (*Recording, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("read journal: %s is not a directory (use --capture for one file)", dir)
	}
	var files []string
	for _, pat := range []string{"capture-*.jsonl", "capture-*.jsonl.gz"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, fmt.Errorf("read journal %s: %w", dir, err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("read journal: no capture-*.jsonl files in %s (watch --journal writes one per surge or storm)", dir)
	}
	sort.Strings(files) // names start with the UTC onset time
	out := &Recording{Files: files}
	last := map[string]time.Time{}
	for _, p := range files {
		r, err := ReadCapture(p)
		if err != nil {
			return nil, err
		}
		for _, rec := range r.Records {
			if rec.Sample != nil {
				if t, ok := last[rec.Target]; ok && !rec.Time.After(t) {
					continue
				}
				last[rec.Target] = rec.Time
			}
			out.Records = append(out.Records, rec)
		}
	}
	return out, nil
}

// Decode parses a capture stream (plain or gzip). name is used in errors,
// which always say the file and line: "FILE line N: what".
func Decode(r io.Reader, name string) ([]Record, error) {
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", name, err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var out []Record
	n := 0
	for sc.Scan() {
		n++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		rec, skip, err := decodeLine(b)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", name, n, err)
		}
		if skip {
			continue
		}
		rec.File, rec.Line = name, n
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s line %d: line longer than %d bytes", name, n+1, maxLine)
		}
		return nil, fmt.Errorf("%s line %d: %w", name, n+1, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no samples (an empty or truncated recording)", name)
	}
	return out, nil
}

// decodeLine parses one line; skip is true for lines that carry no sample
// (the capture header, recorded events, the end marker).
func decodeLine(b []byte) (rec Record, skip bool, err error) {
	var l journal.Line
	if err := json.Unmarshal(b, &l); err != nil {
		return rec, false, fmt.Errorf("not a capture line: %w", err)
	}
	switch l.Kind {
	case "capture", "event", "end":
		return rec, true, nil
	case KindRestart:
		if l.Time.IsZero() {
			return rec, false, errors.New("restart line without a time")
		}
		return Record{Target: l.Target, Time: l.Time, Restart: true}, false, nil
	case "sample":
	case "":
		return rec, false, errors.New(`no "kind" (want capture, sample, event, end or restart)`)
	default:
		return rec, false, fmt.Errorf("unknown kind %q (want capture, sample, event, end or restart)", l.Kind)
	}
	s := l.Sample
	if s == nil {
		return rec, false, errors.New("sample line without a sample")
	}
	if s.Time.IsZero() {
		s.Time = l.Time
	}
	if s.Time.IsZero() {
		return rec, false, errors.New("sample without a time")
	}
	if s.Target == "" {
		s.Target = l.Target
	}
	if s.Target == "" {
		return rec, false, errors.New("sample without a target")
	}
	if s.Errors == nil {
		s.Errors = map[string]string{}
	}
	return Record{Target: s.Target, Time: s.Time, Sample: s}, false, nil
}
