package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/journal"
	"github.com/stormguard/stormguard/internal/sample"
)

// writeCapture writes a capture of 60 s at 500 ms: calm, then from 40 s a
// storm (drops at a full accept queue). It returns the path.
func writeCapture(t *testing.T, dir, name string) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	t0 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	tg := "127.0.0.1:6379"
	_ = enc.Encode(journal.Line{Kind: "capture", Target: tg, Time: t0})
	var conns, drops uint64 = 5000, 0
	for i := 0; i < 120; i++ {
		depth := uint64(0)
		conns += 20
		if i >= 80 {
			conns += 1000
			drops += 300
			depth = 128
		}
		s := &sample.Sample{Time: t0.Add(time.Duration(i) * 500 * time.Millisecond), Target: tg, Port: 6379, IntervalMS: 500,
			Listen: &sample.Listen{Depth: sample.U64(depth), DepthMax: sample.U64(depth), Limit: sample.U64(128), Sockets: 1},
			TCP:    &sample.TCP{ListenOverflows: sample.U64(drops), ListenDrops: sample.U64(drops)},
			Valkey: &sample.Valkey{TotalConnectionsReceived: sample.U64(conns), ConnectedClients: sample.U64(50),
				MaxClients: sample.U64(10000), RejectedConnections: sample.U64(0), PingMS: sample.F64(0.3)},
			Errors: map[string]string{}}
		_ = enc.Encode(journal.Line{Kind: "sample", Target: tg, Time: s.Time, Sample: s})
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReplayCLI(t *testing.T) {
	dir := t.TempDir()
	p := writeCapture(t, dir, "capture-20261201T020000.000Z-127.0.0.1_6379.jsonl")

	r := execCLI(t, "replay", "--capture", p, "--json")
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Msg)
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	var storm bool
	for _, ln := range lines {
		var ev detect.Event
		if err := json.Unmarshal([]byte(ln), &ev); err != nil {
			t.Fatalf("not an event line: %q: %v", ln, err)
		}
		// The same shape as watch --events: the contract keys are present.
		var m map[string]any
		_ = json.Unmarshal([]byte(ln), &m)
		for _, k := range []string{"time", "type", "target", "from", "to", "reason", "verdict", "state_code", "evidence"} {
			if _, ok := m[k]; !ok {
				t.Errorf("event lacks %q: %s", k, ln)
			}
		}
		if ev.Type != "state" {
			t.Errorf("type %q, want state", ev.Type)
		}
		storm = storm || ev.To == detect.Storm
	}
	if !storm {
		t.Fatalf("no storm event in %s", r.Stdout)
	}

	// The table, and the journal directory form.
	r = execCLI(t, "replay", "--journal", dir)
	if r.Code != 0 || !strings.Contains(r.Stdout, "calm → storm") || !strings.Contains(r.Stdout, "120 samples over 59.5s from 1 file(s)") {
		t.Fatalf("exit %d %s:\n%s", r.Code, r.Msg, r.Stdout)
	}

	// A config that makes the detector blind to a single drop interval
	// changes the answer: the replay really uses it.
	cfg := filepath.Join(dir, "deaf.yaml")
	_ = os.WriteFile(cfg, []byte("storm_min_drops: 1000000\naccept_high_occupancy: 1\n"), 0o644)
	r = execCLI(t, "replay", "--capture", p, "--config", cfg, "--json")
	if r.Code != 0 || strings.Contains(r.Stdout, `"to":"storm"`) {
		t.Fatalf("with --config: exit %d %s\n%s", r.Code, r.Msg, r.Stdout)
	}
}

func TestReplayCLIBadInput(t *testing.T) {
	dir := t.TempDir()
	good := writeCapture(t, dir, "good.jsonl")
	bad := filepath.Join(dir, "bad.jsonl")
	b, _ := os.ReadFile(good)
	ls := strings.SplitAfter(string(b), "\n")
	ls[5] = "{\"kind\":\"sample\",\"sample\":{truncated\n"
	_ = os.WriteFile(bad, []byte(strings.Join(ls, "")), 0o644)
	unknown := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(unknown, []byte("new_conn_floor: 800\nsurge_qiuet: 20s\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay"}, "give exactly one of --journal DIR or --capture FILE"},
		{[]string{"replay", "--journal", dir, "--capture", good}, "give exactly one"},
		{[]string{"replay", "--capture", bad}, bad + " line 6: not a capture line"},
		{[]string{"replay", "--capture", filepath.Join(dir, "missing.jsonl")}, "no such file"},
		{[]string{"replay", "--journal", good}, "not a directory"},
		{[]string{"replay", "--capture", good, "--config", unknown}, unknown + ` line 2: unknown key "surge_qiuet"`},
		{[]string{"replay", "--capture", good, "--config", filepath.Join(dir, "nope.yaml")}, "read config"},
	} {
		r := execCLI(t, tc.args...)
		if r.Code != exitUsage || !strings.Contains(r.Msg, tc.want) {
			t.Errorf("%v: exit %d %q, want 2 and %q", tc.args, r.Code, r.Msg, tc.want)
		}
	}
}

// The committed corpus recording of a slow-building storm, replayed by the
// command: an early warning, then the storm.
func TestReplayCLICorpusRecording(t *testing.T) {
	r := execCLI(t, "replay", "--capture", "../../internal/corpus/testdata/storm-slow-build.jsonl.gz", "--json")
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Msg)
	}
	var seq []string
	for _, ln := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		var ev detect.Event
		if err := json.Unmarshal([]byte(ln), &ev); err != nil {
			t.Fatalf("%q: %v", ln, err)
		}
		seq = append(seq, ev.To.String())
	}
	if len(seq) < 2 || seq[0] == "storm" || !slices.Contains(seq, "storm") {
		t.Fatalf("states %v: want a warning before the storm", seq)
	}
}
