package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/simulate"
)

func TestSimulateJSON(t *testing.T) {
	r := execCLI(t, "simulate", "--clients", "1500", "--strategy", "stormguard", "--scenario", "kill", "--json")
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Msg)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
		t.Fatalf("%v: %s", err, r.Stdout)
	}
	for _, k := range []string{"strategy", "clients", "connect_attempts", "peak_connects_per_sec", "listen_overflows",
		"time_to_recover_ms", "recovered", "model"} {
		if _, ok := got[k]; !ok {
			t.Errorf("key %q missing", k)
		}
	}
	if got["recovered"] != true || got["clients"] != float64(1500) {
		t.Errorf("recovered %v, clients %v", got["recovered"], got["clients"])
	}
	m, _ := got["model"].(map[string]any)
	if m["somaxconn"] != float64(128) {
		t.Errorf("model %v", m)
	}
}

func TestSimulateTable(t *testing.T) {
	r := execCLI(t, "simulate", "--clients", "500", "--strategy", "glide", "--scenario", "restart", "--somaxconn", "4096", "--tls")
	if r.Code != 0 || !strings.Contains(r.Stdout, "listen overflows") || !strings.Contains(r.Stdout, "511") {
		t.Fatalf("exit %d, %q", r.Code, r.Stdout)
	}
}

// TestSimulateCalibrate fits a lab file that records its server's accept
// queue (storm --spawn since 2026-12-03; the stored file predates that and
// gets the keys here): with no --somaxconn or --tcp-backlog, the fit and
// the prediction both use the lab's.
func TestSimulateCalibrate(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "internal", "simulate", "testdata", "storm_kill_2000.json"))
	if err != nil {
		t.Fatal(err)
	}
	var runs []map[string]any
	if err := json.Unmarshal(b, &runs); err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		r["somaxconn"], r["tcp_backlog"] = 100, 511
	}
	in := filepath.Join(t.TempDir(), "lab.json")
	if b, err = json.Marshal(runs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// A calibration takes ~30 s on an idle 2-core machine: bound it by
	// what a hang would take, not by a loaded CI machine's speed.
	r := execCLIWithin(t, 5*time.Minute, "simulate", "--calibrate", in, "--clients", "3000", "--strategy", "stormguard", "--json")
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Msg)
	}
	var got struct {
		Calibration *struct{ Runs int } `json:"calibration"`
		Model       struct {
			ClientBurst float64 `json:"client_burst"`
			Somaxconn   int     `json:"somaxconn"`
			TCPBacklog  int     `json:"tcp_backlog"`
		} `json:"model"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil || got.Calibration == nil || got.Calibration.Runs == 0 {
		t.Fatalf("%v: %s", err, r.Stdout)
	}
	if got.Model.ClientBurst <= 1 { // read off the lab's timeline: its kills were bursty
		t.Errorf("calibrated client burst %g", got.Model.ClientBurst)
	}
	if got.Model.Somaxconn != 100 || got.Model.TCPBacklog != 511 || !strings.Contains(r.Stderr, "somaxconn 100 and tcp-backlog 511") {
		t.Errorf("model somaxconn %d, tcp_backlog %d; stderr %q: want the lab's 100 and 511", got.Model.Somaxconn, got.Model.TCPBacklog, r.Stderr)
	}
}

func TestLabQueue(t *testing.T) {
	n := func(v int) *int { return &v }
	for _, tc := range []struct {
		name               string
		obs                []simulate.Observation
		somaxconn, backlog int
		ok, err            bool
	}{
		{"none recorded", []simulate.Observation{{}, {}}, 0, 0, false, false},
		{"one recorded", []simulate.Observation{{}, {Somaxconn: n(128), TCPBacklog: n(511)}}, 128, 511, true, false},
		{"all agree", []simulate.Observation{{Somaxconn: n(128), TCPBacklog: n(511)}, {Somaxconn: n(128), TCPBacklog: n(511)}}, 128, 511, true, false},
		{"half recorded", []simulate.Observation{{Somaxconn: n(128)}}, 0, 0, false, false},
		{"differ", []simulate.Observation{{Somaxconn: n(128), TCPBacklog: n(511)}, {Somaxconn: n(4096), TCPBacklog: n(511)}}, 0, 0, false, true},
		{"zero", []simulate.Observation{{Somaxconn: n(0), TCPBacklog: n(511)}}, 0, 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, b, ok, err := labQueue(tc.obs)
			if s != tc.somaxconn || b != tc.backlog || ok != tc.ok || (err != nil) != tc.err {
				t.Errorf("labQueue = %d, %d, %v, %v; want %d, %d, %v, error %v", s, b, ok, err, tc.somaxconn, tc.backlog, tc.ok, tc.err)
			}
		})
	}
}

func TestSimulateBadInput(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	// --calibrate files a user might pass by mistake: each is one line and
	// exit 2, before any simulation runs.
	dir := t.TempDir()
	for name, body := range map[string]string{
		"truncated": `[{"strategy":"immediate","clients":2000,"scenario":"kill"`,
		"empty":     `[]`,
		"null":      `null`,
		"failover":  `{"strategy":"immediate","clients":10,"scenario":"failover","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1}`,
		"zero":      `{"strategy":"immediate","clients":0,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1}`,
		"negative":  `{"strategy":"immediate","clients":10,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1,"connect_attempts":-4}`,
		"library":   `[{"strategy":"go-redis","clients":10,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1}]`,
		"two servers": `[{"strategy":"immediate","clients":10,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1,"somaxconn":128,"tcp_backlog":511},` +
			`{"strategy":"immediate","clients":10,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1,"somaxconn":4096,"tcp_backlog":511}]`,
	} {
		f := filepath.Join(dir, name+".json")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		r := execCLI(t, "simulate", "--clients", "10", "--strategy", "immediate", "--calibrate", f)
		if r.Code != 2 || !strings.Contains(r.Msg, f) || strings.Contains(r.Msg, "\n") {
			t.Errorf("--calibrate %s: exit %d, message %q; want 2 and one line naming the file", name, r.Code, r.Msg)
		}
	}
	for _, args := range [][]string{
		{"simulate", "--clients", "10"},
		{"simulate", "--clients", "0", "--strategy", "immediate"},
		{"simulate", "--clients", "2000000", "--strategy", "immediate"},
		{"simulate", "--clients", "10", "--strategy", "valkey-go"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--observe-cpu"},
		{"simulate", "--clients", "10", "--strategy", "stormguard", "--observe-cpu", "--no-observe"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--answer-cost", "-1us"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--scenario", "churn"},
		{"simulate", "--clients", "10", "--strategy", "glide", "--retries", "0"},
		{"simulate", "--clients", "10", "--strategy", "glide", "--jitter-percent", "150"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--syncookies", "3"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--fleet-hint", "5"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--accept-rate", "100", "--calibrate", bad},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--calibrate", bad},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--calibrate", filepath.Join(t.TempDir(), "none.json")},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--max-new-connections-per-cycle", "0"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--nope"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--duration", "1h"},
		// NaN fails every comparison: each float flag must still be refused.
		{"simulate", "--clients", "10", "--strategy", "immediate", "--accept-rate", "NaN"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--accept-rate", "Inf"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--client-share", "NaN"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--client-burst", "NaN"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--host-load", "NaN"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--client-dial-rate", "NaN"},
		{"simulate", "--clients", "10", "--strategy", "stormguard", "--dialer-accept-rate", "NaN"},
		{"simulate", "--clients", "10", "--strategy", "immediate", "--conn-cost", "-1ms"},
	} {
		r := execCLI(t, args...)
		if r.Code != 2 || r.Msg == "" || strings.Contains(r.Msg, "\n") {
			t.Errorf("%v: exit %d, message %q; want 2 and one line", args, r.Code, r.Msg)
		}
	}
}

func TestSimulateAdvise(t *testing.T) {
	r := execCLI(t, "simulate", "--advise", "--clients", "800", "--json")
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Msg)
	}
	var got struct {
		Advice []struct {
			Setting         string `json:"setting"`
			ListenOverflows uint64 `json:"listen_overflows"`
			Recovered       bool   `json:"recovered"`
		} `json:"advice"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil || len(got.Advice) < 5 {
		t.Fatalf("%v: %s", err, r.Stdout)
	}
	// Ranked: a recovered row never follows one that did not recover.
	seenUnrecovered := false
	for _, a := range got.Advice {
		if !a.Recovered {
			seenUnrecovered = true
		} else if seenUnrecovered {
			t.Errorf("recovered %q ranked below an unrecovered setting", a.Setting)
		}
	}
	if r := execCLI(t, "simulate", "--advise", "--strategy", "glide", "--clients", "10"); r.Code != 2 {
		t.Errorf("--advise with --strategy: exit %d", r.Code)
	}
}

// TestSameHostPinned: a lab run with Valkey pinned to CPUs of its own
// (--server-cpus) did not share its cores with the fleet, one from other
// hosts neither; an unpinned single-host run did.
func TestSameHostPinned(t *testing.T) {
	for _, c := range []struct {
		o    simulate.Observation
		want bool
	}{{simulate.Observation{}, true}, {simulate.Observation{ServerCPUs: "1"}, false}, {simulate.Observation{Hosts: 4}, false}} {
		if got := sameHost([]simulate.Observation{c.o}); got != c.want {
			t.Errorf("sameHost(%+v) = %v, want %v", c.o, got, c.want)
		}
	}
}
