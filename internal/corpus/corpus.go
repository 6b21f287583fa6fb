package corpus

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/replay"
	"github.com/stormguard/stormguard/internal/sample"
)

// Kinds of shapes.
const (
	Benign = "benign" // must never leave calm
	Storm  = "storm"  // must reach storm
)

// Label is what a recording must make the detector say, stored next to it
// as NAME.label.json.
type Label struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"` // benign or storm
	Shape string `json:"shape"`
	// Description says what the traffic was, for humans.
	Description string `json:"description"`
	// SlowBuild: the accept queue filled over at least a second before the
	// first drop; the detector must warn (surge) before the first drop.
	SlowBuild bool `json:"slow_build,omitempty"`
	// FirstDrop is the time of the first sample whose drop or refusal
	// counters moved (see FirstDrop); null for benign shapes.
	FirstDrop *time.Time `json:"first_drop"`
	// FirstDropAfter is the previous sample's time: the first drop happened
	// in (FirstDropAfter, FirstDrop].
	FirstDropAfter *time.Time `json:"first_drop_after"`
	// RefusedUntil: the shape's clients were still failing to connect
	// (connect or TLS handshake timeouts, refusals; counted by the
	// clients themselves, at least 50 in a second) until this time, so
	// the storm was not over before it: the detector must not leave
	// storm earlier. Set only by shapes whose clients count failures.
	RefusedUntil *time.Time `json:"refused_until,omitempty"`
	// DropCounter names the counter that moved first.
	DropCounter string `json:"drop_counter,omitempty"`
	// Dropped is the total over the recording per drop counter.
	Dropped map[string]uint64 `json:"dropped"`
	// Samples and Seconds describe the recording.
	Samples int     `json:"samples"`
	Seconds float64 `json:"seconds"`
	// Recorded is when and how: the command that re-records this shape.
	Recorded time.Time `json:"recorded"`
	Command  string    `json:"command"`
	// Notes: anything the recording could not do as designed.
	Notes string `json:"notes,omitempty"`
}

// dropCounters are the counters that count a connection dropped or refused
// now: the facts a storm label is derived from.
var dropCounters = []struct {
	name string
	get  func(*sample.Sample) *uint64
}{
	{"tcp.listen_overflows", func(s *sample.Sample) *uint64 {
		if s.TCP == nil {
			return nil
		}
		return s.TCP.ListenOverflows
	}},
	{"tcp.listen_drops", func(s *sample.Sample) *uint64 {
		if s.TCP == nil {
			return nil
		}
		return s.TCP.ListenDrops
	}},
	{"tcp.reqq_full_drop", func(s *sample.Sample) *uint64 {
		if s.TCP == nil {
			return nil
		}
		return s.TCP.ReqQFullDrop
	}},
	{"conntrack.drop", func(s *sample.Sample) *uint64 {
		if s.Conntrack == nil {
			return nil
		}
		return s.Conntrack.Drop
	}},
	{"valkey.rejected_connections", func(s *sample.Sample) *uint64 {
		if s.Valkey == nil {
			return nil
		}
		return s.Valkey.RejectedConnections
	}},
}

// Drops derives the drop facts of a recording from its counters: the first
// sample where a drop counter rose above its previous reading (a counter
// that falls is a reset — a restarted Valkey — and starts over), the
// sample before it, which counter, and the totals. first is nil when
// nothing was dropped.
func Drops(rec *replay.Recording) (first, after *time.Time, counter string, total map[string]uint64) {
	total = map[string]uint64{}
	prev := map[string]uint64{}
	has := map[string]bool{}
	var prevT time.Time
	for _, r := range rec.Records {
		if r.Sample == nil {
			continue
		}
		for _, c := range dropCounters {
			p := c.get(r.Sample)
			if p == nil {
				continue
			}
			if has[c.name] && *p > prev[c.name] {
				total[c.name] += *p - prev[c.name]
				if first == nil {
					t, a := r.Time, prevT
					first, after, counter = &t, &a, c.name
				}
			}
			prev[c.name], has[c.name] = *p, true
		}
		prevT = r.Time
	}
	return first, after, counter, total
}

// SlowBuild reports whether the recording shows this port's accept queue
// filling before the first drop: consecutive samples with the queue peak
// (listen.depth_max) at or above a quarter of its limit, the first and the
// last of them at least a second apart, the last one before the first
// drop. It must be seen filling: one sample at 59 % followed by a sampling
// gap and the drop is not a slow build (it is also what a pool warm-up
// looks like on a small somaxconn).
func SlowBuild(rec *replay.Recording, firstDrop time.Time) bool {
	var since, until time.Time
	for _, x := range rec.Records {
		if x.Sample == nil || !x.Time.Before(firstDrop) {
			continue
		}
		l := x.Sample.Listen
		if l == nil || l.DepthMax == nil || l.Limit == nil || *l.Limit == 0 || float64(*l.DepthMax) < float64(*l.Limit)/4 {
			since, until = time.Time{}, time.Time{}
			continue
		}
		if since.IsZero() {
			since = x.Time
		}
		until = x.Time
	}
	return !since.IsZero() && until.Sub(since) >= time.Second
}

// Entry is one recording with its label.
type Entry struct {
	Path  string
	Label Label
}

// List returns the recordings in dir (NAME.jsonl.gz with NAME.label.json),
// sorted by name. A recording without a label, or a label without a
// recording, is an error: the corpus must be whole.
func List(dir string) ([]Entry, error) {
	recs, err := filepath.Glob(filepath.Join(dir, "*.jsonl.gz"))
	if err != nil {
		return nil, fmt.Errorf("list corpus %s: %w", dir, err)
	}
	labels, _ := filepath.Glob(filepath.Join(dir, "*.label.json"))
	if len(labels) != len(recs) {
		return nil, fmt.Errorf("corpus %s: %d recordings but %d labels", dir, len(recs), len(labels))
	}
	sort.Strings(recs)
	var out []Entry
	for _, p := range recs {
		lp := strings.TrimSuffix(p, ".jsonl.gz") + ".label.json"
		b, err := os.ReadFile(lp)
		if err != nil {
			return nil, fmt.Errorf("corpus label: %w", err)
		}
		var l Label
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("corpus label %s: %w", lp, err)
		}
		if l.Kind != Benign && l.Kind != Storm {
			return nil, fmt.Errorf("corpus label %s: kind %q, want benign or storm", lp, l.Kind)
		}
		if l.Kind == Storm && l.FirstDrop == nil {
			return nil, fmt.Errorf("corpus label %s: a storm without a first drop", lp)
		}
		out = append(out, Entry{Path: p, Label: l})
	}
	return out, nil
}
