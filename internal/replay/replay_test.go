package replay

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/journal"
	"github.com/stormguard/stormguard/internal/sample"
)

// synth returns a capture stream of n samples every dt for target: calm
// churn, then from stormAt on (if >= 0) 500 drops/s at a full accept queue.
func synth(target string, t0 time.Time, dt time.Duration, n, stormAt int) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	_ = enc.Encode(journal.Line{Kind: "capture", Target: target, Time: t0})
	passive, conns, drops := 1_000_000.0, 5_000.0, 100.0
	for i := 0; i < n; i++ {
		t := t0.Add(time.Duration(i) * dt)
		depth := uint64(0)
		if stormAt >= 0 && i >= stormAt {
			drops += 500 * dt.Seconds()
			passive += 2000 * dt.Seconds()
			conns += 2000 * dt.Seconds()
			depth = 128
		} else {
			passive += 50 * dt.Seconds()
			conns += 50 * dt.Seconds()
		}
		s := &sample.Sample{Time: t, Target: target, Port: 6379, IntervalMS: float64(dt.Milliseconds()),
			Listen:  &sample.Listen{Depth: sample.U64(depth), DepthMax: sample.U64(depth), Limit: sample.U64(128), Sockets: 1},
			SynRecv: sample.U64(0), Established: sample.U64(60),
			TCP: &sample.TCP{ListenOverflows: sample.U64(uint64(drops)), ListenDrops: sample.U64(uint64(drops)),
				ReqQFullDrop: sample.U64(0), ReqQFullDoCookies: sample.U64(0), PassiveOpens: sample.U64(uint64(passive))},
			Valkey: &sample.Valkey{ConnectedClients: sample.U64(60), MaxClients: sample.U64(10000),
				TotalConnectionsReceived: sample.U64(uint64(conns)), RejectedConnections: sample.U64(0), PingMS: sample.F64(0.2)},
			Errors: map[string]string{}}
		_ = enc.Encode(journal.Line{Kind: "sample", Target: target, Time: t, Sample: s})
	}
	_ = enc.Encode(journal.Line{Kind: "end", Target: target, Time: t0.Add(time.Duration(n) * dt)})
	return buf.Bytes()
}

var t0 = time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

func TestReplayFindsStormPlainAndGzip(t *testing.T) {
	raw := synth("127.0.0.1:6379", t0, 500*time.Millisecond, 120, 80)
	for name, b := range map[string][]byte{"capture.jsonl": raw, "capture.jsonl.gz": gz(raw)} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			rec, err := ReadCapture(p)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Samples() != 120 {
				t.Fatalf("samples = %d, want 120", rec.Samples())
			}
			res := Run(detect.Config{}, rec)
			var storm *detect.Event
			for i, ev := range res.Events {
				if ev.To == detect.Storm {
					storm = &res.Events[i]
					break
				}
			}
			if storm == nil {
				t.Fatalf("no storm event in %+v", res.Events)
			}
			if want := t0.Add(80 * 500 * time.Millisecond); !storm.Time.Equal(want) {
				t.Errorf("storm at %s, want the first drop sample %s (the recording's own clock)", storm.Time, want)
			}
			if res.Final["127.0.0.1:6379"] != detect.Storm {
				t.Errorf("final = %s, want storm", res.Final["127.0.0.1:6379"])
			}
		})
	}
}

// Replay must match feeding the same samples to a detector by hand: it is
// the live path, not an approximation of it.
func TestReplayEqualsLiveFeed(t *testing.T) {
	raw := synth("127.0.0.1:6379", t0, 100*time.Millisecond, 300, 150)
	recs, err := Decode(bytes.NewReader(raw), "x")
	if err != nil {
		t.Fatal(err)
	}
	d := detect.New(detect.Config{})
	var want []detect.Event
	for _, r := range recs {
		_, evs := d.Observe(r.Sample)
		want = append(want, evs...)
	}
	got := Run(detect.Config{}, &Recording{Records: recs}).Events
	a, _ := json.Marshal(want)
	b, _ := json.Marshal(got)
	if !bytes.Equal(a, b) || len(got) == 0 {
		t.Fatalf("replay events differ from a live feed:\n got %s\nwant %s", b, a)
	}
}

func TestReadJournalMergesAndDedupes(t *testing.T) {
	dir := t.TempDir()
	// Two captures of one target overlapping by 20 samples (the second's
	// pre-onset window), and one of another target.
	a := synth("127.0.0.1:6379", t0, 500*time.Millisecond, 100, -1)
	b := synth("127.0.0.1:6379", t0.Add(40*time.Second), 500*time.Millisecond, 100, 50)
	c := synth("127.0.0.1:6380", t0, 500*time.Millisecond, 10, -1)
	for name, body := range map[string][]byte{
		"capture-20261201T020000.000Z-127.0.0.1_6379.jsonl":    a,
		"capture-20261201T020040.000Z-127.0.0.1_6379.jsonl.gz": gz(b),
		"capture-20261201T020000.000Z-127.0.0.1_6380.jsonl":    c,
		"notes.txt": []byte("not a capture"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Files) != 3 {
		t.Errorf("files = %v, want the 3 captures", rec.Files)
	}
	last := map[string]time.Time{}
	n := map[string]int{}
	for _, r := range rec.Records {
		if r.Sample == nil {
			continue
		}
		if !r.Time.After(last[r.Target]) {
			t.Fatalf("%s: sample at %s not after %s (line %d of %s)", r.Target, r.Time, last[r.Target], r.Line, r.File)
		}
		last[r.Target] = r.Time
		n[r.Target]++
	}
	// a: 0..49.5 s (100 samples); b: 40..89.5 s, of which 50..89.5 s are new (80).
	if n["127.0.0.1:6379"] != 180 || n["127.0.0.1:6380"] != 10 {
		t.Errorf("samples per target = %v, want 180 and 10", n)
	}
	res := Run(detect.Config{}, rec)
	if res.Final["127.0.0.1:6379"] != detect.Storm || res.Final["127.0.0.1:6380"] != detect.Calm {
		t.Errorf("final = %v", res.Final)
	}
}

func TestRestartStartsAFreshDetector(t *testing.T) {
	raw := synth("127.0.0.1:6379", t0, 500*time.Millisecond, 40, 10)
	var buf bytes.Buffer
	buf.Write(raw)
	// After the restart the stream is calm again: a fresh detector starts
	// in calm, so there is no recovering → calm event for it to emit.
	restart, _ := json.Marshal(journal.Line{Kind: KindRestart, Target: "127.0.0.1:6379", Time: t0.Add(25 * time.Second)})
	buf.Write(append(restart, '\n'))
	buf.Write(synth("127.0.0.1:6379", t0.Add(30*time.Second), 500*time.Millisecond, 20, -1))
	recs, err := Decode(&buf, "x")
	if err != nil {
		t.Fatal(err)
	}
	res := Run(detect.Config{}, &Recording{Records: recs})
	if res.Final["127.0.0.1:6379"] != detect.Calm {
		t.Errorf("final = %s, want calm (fresh detector)", res.Final["127.0.0.1:6379"])
	}
}

func TestDecodeErrorsNameFileAndLine(t *testing.T) {
	good := `{"kind":"sample","time":"2026-12-01T02:00:00Z","target":"a:1","sample":{"time":"2026-12-01T02:00:00Z","target":"a:1"}}`
	for _, tc := range []struct {
		name, in, want string
	}{
		{"garbage", good + "\n{not json\n", "f.jsonl line 2: not a capture line"},
		{"unknown kind", `{"kind":"bogus","time":"2026-12-01T02:00:00Z"}`, `f.jsonl line 1: unknown kind "bogus"`},
		{"no kind", `{"time":"2026-12-01T02:00:00Z"}`, `f.jsonl line 1: no "kind"`},
		{"no sample", `{"kind":"sample","time":"2026-12-01T02:00:00Z"}`, "line 1: sample line without a sample"},
		{"no time", `{"kind":"sample","target":"a:1","sample":{"target":"a:1"}}`, "line 1: sample without a time"},
		{"no target", `{"kind":"sample","time":"2026-12-01T02:00:00Z","sample":{}}`, "line 1: sample without a target"},
		{"wrong type", `{"kind":"sample","time":"2026-12-01T02:00:00Z","target":"a:1","sample":{"port":"x"}}`, "line 1: not a capture line"},
		{"blank lines count", "\n\n" + good + "\n[1,2]\n", "f.jsonl line 4:"},
		{"empty", "", "f.jsonl: no samples"},
		{"only header", `{"kind":"capture","time":"2026-12-01T02:00:00Z","target":"a:1"}`, "no samples"},
		{"bad gzip", "\x1f\x8b\x08garbage", "f.jsonl: gzip"},
		{"long line", `{"kind":"sample","x":"` + strings.Repeat("a", maxLine) + `"}`, "f.jsonl line 1: line longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tc.in), "f.jsonl")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
	if _, err := Decode(strings.NewReader(good+"\n"), "f"); err != nil {
		t.Errorf("good line: %v", err)
	}
}

func TestReadJournalErrors(t *testing.T) {
	if _, err := ReadJournal(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing dir: no error")
	}
	empty := t.TempDir()
	if _, err := ReadJournal(empty); err == nil || !strings.Contains(err.Error(), "no capture-*.jsonl") {
		t.Errorf("empty dir: %v", err)
	}
	f := filepath.Join(empty, "capture-x.jsonl")
	_ = os.WriteFile(f, []byte("{oops\n"), 0o644)
	if _, err := ReadJournal(empty); err == nil || !strings.Contains(err.Error(), f+" line 1") {
		t.Errorf("bad capture: %v", err)
	}
	if _, err := ReadJournal(f); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file as dir: %v", err)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		check    func(detect.Config) bool
		wantErr  string
	}{
		{"empty", "", func(c detect.Config) bool { return c == detect.Config{} }, ""},
		{"comments only", "# nothing\n", func(c detect.Config) bool { return c == detect.Config{} }, ""},
		{"yaml", "new_conn_floor: 800\nsurge_quiet: 20s\nping_floor_ms: 250\nsyn_recv_min: 32\nping_sustain: 3\n",
			func(c detect.Config) bool {
				return c.NewConnFloor == 800 && c.SurgeQuiet == 20*time.Second && c.PingFloorMS == 250 && c.SynRecvMin == 32 && c.PingSustain == 3
			}, ""},
		{"json", `{"new_conn_factor": 6, "calm_quiet": "1m"}`,
			func(c detect.Config) bool { return c.NewConnFactor == 6 && c.CalmQuiet == time.Minute }, ""},
		{"unknown key", "new_conn_floor: 800\nnew_con_factor: 3\n", nil, `c.yaml line 2: unknown key "new_con_factor" (known: `},
		{"target not settable", "target: x\n", nil, `unknown key "target"`},
		{"duration as number", "calm_quiet: 30\n", nil, `c.yaml line 1: calm_quiet: want a duration`},
		{"bad number", "new_conn_floor: lots\n", nil, "line 1: new_conn_floor: want a number"},
		{"nan", "new_conn_floor: .nan\n", nil, "want a number"},
		{"negative uint", "syn_recv_min: -1\n", nil, "want a non-negative integer"},
		{"nested", "new_conn_floor: [1]\n", nil, "want a single value"},
		{"twice", "new_conn_floor: 1\nnew_conn_floor: 2\n", nil, "line 2: key \"new_conn_floor\" given twice"},
		{"not a mapping", "- a\n- b\n", nil, "c.yaml line 1: want a mapping"},
		{"invalid value", "accept_high_occupancy: 2\n", nil, "c.yaml: detector config: accept_high_occupancy 2 must be in (0,1]"},
		{"invalid pair", "baseline_min_buckets: 9\nbaseline_buckets: 3\n", nil, "need 1 <= baseline_min_buckets (9) <= baseline_buckets (3)"},
		{"negative duration", "surge_quiet: -5s\n", nil, "c.yaml line 1: surge_quiet: must not be negative, got -5s"},
		{"yaml syntax", "a: [\n", nil, "c.yaml: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.in), "c.yaml")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("cfg = %+v, err = %v", c, err)
			}
		})
	}
}

func TestConfigKeysCoverConfig(t *testing.T) {
	keys := ConfigKeys()
	for _, k := range []string{"new_conn_factor", "new_conn_floor", "rate_window", "baseline_min_buckets", "ping_floor_ms",
		"accept_high_occupancy", "insert_failed_min_rate", "storm_quiet", "max_gap"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("key %q missing from %v", k, keys)
		}
	}
	for in, want := range map[string]string{"PingFloorMS": "ping_floor_ms", "NewConnFloor": "new_conn_floor", "NICDrops": "nic_drops", "A": "a"} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

// A journal directory written by the agent's own journal (not a fixture
// of ours) replays: the formats agree.
func TestReadJournalWrittenByJournal(t *testing.T) {
	dir := t.TempDir()
	j := journal.Open(journal.Options{Dir: dir, Interval: 500 * time.Millisecond})
	recs, err := Decode(bytes.NewReader(synth("127.0.0.1:6379", t0, 500*time.Millisecond, 120, 80)), "x")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		j.Sample(r.Sample)
		if i == 79 {
			// The live agent's storm event opens a capture with the last
			// minute of samples before it.
			j.Event(r.Target, r.Time, "storm", map[string]string{"type": "state", "to": "storm"})
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	rec, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	// 60 s before onset at 500 ms (the ring) + the rest of the stream.
	if n := rec.Samples(); n < 100 || n > 120 {
		t.Fatalf("replayed %d samples from the journal, want the pre-onset minute and the 40 after", n)
	}
	res := Run(detect.Config{}, rec)
	if res.Final["127.0.0.1:6379"] != detect.Storm {
		t.Fatalf("final %v, events %+v", res.Final, res.Events)
	}
}
