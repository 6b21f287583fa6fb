package journal

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// Options configure a Journal. Zero values mean the documented defaults.
type Options struct {
	// Dir receives storm captures; empty disables captures.
	Dir string
	// EventsPath receives one JSON object per line per event; empty disables.
	EventsPath string
	// Keep is how much history the in-memory recorder holds (15m).
	Keep time.Duration
	// Interval is the sampling interval, to size the ring (500ms).
	Interval time.Duration
	// PreOnset is how much history before onset a capture includes (60s).
	PreOnset time.Duration
	// MaxEventsBytes rotates the events file past this size (64 MiB), keeping 3.
	MaxEventsBytes int64
	// MaxCaptureBytes stops appending samples to one capture past this size
	// (256 MiB); events are still written.
	MaxCaptureBytes int64
	Logger          *slog.Logger
}

// Journal records samples and events. Safe for concurrent use.
type Journal struct {
	o      Options
	mu     sync.Mutex
	rings  map[string]*Ring
	caps   map[string]*capture
	events *RotatingFile
	errs   map[string]error // last error per kind, logged once
	// WriteErrors counts failed writes (disk full, …).
	writeErrors uint64
}

type capture struct {
	path  string
	f     *RotatingFile
	onset time.Time
	bytes int64
}

// Line is one line of a capture file.
type Line struct {
	Kind   string          `json:"kind"` // "capture", "sample", "event", "end"
	Target string          `json:"target,omitempty"`
	Time   time.Time       `json:"time"`
	Sample *sample.Sample  `json:"sample,omitempty"`
	Event  json.RawMessage `json:"event,omitempty"`
}

// Open prepares a journal; directories are created lazily.
func Open(o Options) *Journal {
	if o.Keep <= 0 {
		o.Keep = 15 * time.Minute
	}
	if o.Interval <= 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.PreOnset <= 0 {
		o.PreOnset = time.Minute
	}
	if o.MaxEventsBytes <= 0 {
		o.MaxEventsBytes = 64 << 20
	}
	if o.MaxCaptureBytes <= 0 {
		o.MaxCaptureBytes = 256 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	j := &Journal{o: o, rings: map[string]*Ring{}, caps: map[string]*capture{}, errs: map[string]error{}}
	if o.EventsPath != "" {
		j.events = &RotatingFile{Path: o.EventsPath, MaxBytes: o.MaxEventsBytes, Keep: 3}
	}
	return j
}

// Sample records s in the ring and in an open capture of its target.
func (j *Journal) Sample(s *sample.Sample) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := j.rings[s.Target]
	if r == nil {
		n := int(j.o.Keep/j.o.Interval) + 1
		r = NewRing(n)
		j.rings[s.Target] = r
	}
	r.Add(s)
	if c := j.caps[s.Target]; c != nil && c.bytes < j.o.MaxCaptureBytes {
		j.writeCapture(c, Line{Kind: "sample", Target: s.Target, Time: s.Time, Sample: s})
	}
}

// Recent returns a target's samples newer than since, oldest first.
func (j *Journal) Recent(target string, since time.Time) []*sample.Sample {
	j.mu.Lock()
	defer j.mu.Unlock()
	if r := j.rings[target]; r != nil {
		return r.Since(since)
	}
	return nil
}

// Event records an event. to is the new state for state events ("" for
// others): surge or storm opens a capture for target, calm closes it.
func (j *Journal) Event(target string, at time.Time, to string, ev any) {
	raw, err := json.Marshal(ev)
	if err != nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.events != nil {
		j.note("events", j.events.WriteLine(raw))
	}
	if j.o.Dir == "" {
		return
	}
	c := j.caps[target]
	if c == nil && (to == "surge" || to == "storm") {
		c = j.openCapture(target, at)
	}
	if c == nil {
		return
	}
	j.writeCapture(c, Line{Kind: "event", Target: target, Time: at, Event: raw})
	if to == "calm" {
		j.writeCapture(c, Line{Kind: "end", Target: target, Time: at})
		c.f.Close()
		delete(j.caps, target)
		j.o.Logger.Info("storm capture closed", "target", target, "path", c.path)
	}
}

func (j *Journal) openCapture(target string, at time.Time) *capture {
	name := fmt.Sprintf("capture-%s-%s.jsonl", at.UTC().Format("20060102T150405.000Z"), sanitize(target))
	c := &capture{path: filepath.Join(j.o.Dir, name), onset: at}
	c.f = &RotatingFile{Path: c.path}
	j.caps[target] = c
	j.writeCapture(c, Line{Kind: "capture", Target: target, Time: at})
	if r := j.rings[target]; r != nil {
		for _, s := range r.Since(at.Add(-j.o.PreOnset)) {
			j.writeCapture(c, Line{Kind: "sample", Target: target, Time: s.Time, Sample: s})
		}
	}
	j.o.Logger.Info("storm capture opened", "target", target, "path", c.path)
	return c
}

func (j *Journal) writeCapture(c *capture, l Line) {
	b, err := json.Marshal(l)
	if err != nil {
		return
	}
	if err := c.f.WriteLine(b); err != nil {
		j.note("capture", err)
		return
	}
	c.bytes += int64(len(b) + 1)
}

// note logs the first error of each kind, and the recovery.
func (j *Journal) note(kind string, err error) {
	prev := j.errs[kind]
	switch {
	case err != nil && prev == nil:
		j.writeErrors++
		j.o.Logger.Error("journal write failed; sampling continues", "kind", kind, "err", err)
		j.errs[kind] = err
	case err != nil:
		j.writeErrors++
	case prev != nil:
		j.o.Logger.Info("journal writes recovered", "kind", kind)
		delete(j.errs, kind)
	}
}

// WriteErrors returns how many journal writes failed.
func (j *Journal) WriteErrors() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.writeErrors
}

// Close ends open captures and closes files.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := time.Now()
	for t, c := range j.caps {
		j.writeCapture(c, Line{Kind: "end", Target: t, Time: now})
		c.f.Close()
		delete(j.caps, t)
	}
	if j.events != nil {
		return j.events.Close()
	}
	return nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		}
		return '_'
	}, s)
}

// ReadCapture parses a capture file.
func ReadCapture(path string) ([]Line, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read capture: %w", err)
	}
	var out []Line
	for i, ln := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(ln) == "" {
			continue
		}
		var l Line
		if err := json.Unmarshal([]byte(ln), &l); err != nil {
			return out, fmt.Errorf("capture %s line %d: %w", path, i+1, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// Reopen closes the events file so the next write reopens it (after
// logrotate moved it away).
func (j *Journal) Reopen() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.events != nil {
		j.events.Close()
	}
}
