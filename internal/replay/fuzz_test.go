package replay

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
)

// FuzzDecode feeds arbitrary bytes to the capture reader and whatever it
// accepts to the detector: no panic, errors name the input and a line,
// accepted records carry a time and a target.
// go test -run '^$' -fuzz FuzzDecode -fuzztime 60s ./internal/replay
func FuzzDecode(f *testing.F) {
	f.Add(synth("127.0.0.1:6379", t0, 100*time.Millisecond, 5, 2))
	f.Add(gz(synth("127.0.0.1:6379", t0, 500*time.Millisecond, 3, -1)))
	f.Add([]byte(`{"kind":"restart","target":"a:1","time":"2026-12-01T02:00:00Z"}` + "\n" +
		`{"kind":"sample","time":"2026-12-01T02:00:01Z","target":"a:1","sample":{"time":"2026-12-01T02:00:01Z","target":"a:1","tcp":{"listen_drops":5}}}`))
	f.Add([]byte(`{"kind":"sample","sample":{"time":"0001-01-01T00:00:00Z","target":"a","valkey":{"ping_ms":1e308}}}`))
	f.Add([]byte("{oops"))
	f.Add([]byte("\x1f\x8b\x08\x00"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := Decode(bytes.NewReader(b), "fuzz.jsonl")
		if err != nil {
			if !bytes.HasPrefix([]byte(err.Error()), []byte("fuzz.jsonl")) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, r := range recs {
			if r.Time.IsZero() || (r.Sample != nil && r.Target == "") || r.Line < 1 {
				t.Fatalf("accepted a record without time/target/line: %+v", r)
			}
		}
		res := Run(detect.Config{}, &Recording{Records: recs})
		for _, ev := range res.Events {
			if !ev.From.Valid() || !ev.To.Valid() {
				t.Fatalf("invalid state in %+v", ev)
			}
			if _, err := json.Marshal(ev); err != nil {
				t.Fatalf("event does not encode: %v", err)
			}
		}
	})
}

// FuzzParseConfig: no panic on any config file; what it accepts validates.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"", "new_conn_floor: 800\nsurge_quiet: 20s\n", `{"calm_quiet":"1m","ping_factor":2}`,
		"- a", "a: [", "accept_high_occupancy: 2", "max_gap: -5s", "&a [*a]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, "c.yaml")
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("accepted an invalid config: %v", verr)
			}
		}
	})
}
