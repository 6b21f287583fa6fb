package simulate

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"slices"
	"testing"
	"time"
)

// observe turns a simulated result into what storm --json would say.
func observe(r *Result) Observation {
	ov := r.ListenOverflows
	return Observation{Strategy: r.Strategy, Clients: r.Clients, Scenario: r.Scenario,
		ConnectAttempts: r.ConnectAttempts, PeakConnectsPerSec: r.PeakConnectsPerSec,
		TimeToRecoverMS: r.TimeToRecoverMS, ListenOverflows: &ov}
}

// TestCalibrateRecoversKnownCosts is the fast calibration smoke test:
// results made by a model with known costs are fitted from the default
// costs, and the fitted model predicts another fleet size within 20% on
// time to recover. Small fleets: it runs in seconds.
func TestCalibrateRecoversKnownCosts(t *testing.T) {
	truth := DefaultModel()
	truth.ConnCost = 150 * time.Microsecond
	// A restart: the server's costs alone set the storm (a kill's cost
	// per client is fitted too, and one size does not pin both).
	f := Fleet{Strategy: "full-jitter", Scenario: "restart"}
	mk := func(n int) *Result {
		ff := f
		ff.Clients = n
		return run(t, truth, ff)
	}
	fit, err := Calibrate(context.Background(), DefaultModel(), f, []Observation{observe(mk(1500))})
	if err != nil {
		t.Fatal(err)
	}
	// The time to recover moves in retransmit waves (the timer wheel's
	// ticks, where the seed puts the storm): compare the medians of three
	// seeds, as the lab check compares medians.
	medTTR := func(m Model) time.Duration {
		var ts []time.Duration
		for seed := uint64(1); seed <= 3; seed++ {
			ff := f
			ff.Clients, ff.Seed = 3000, seed
			ts = append(ts, ttr(run(t, m, ff)))
		}
		slices.Sort(ts)
		return ts[1]
	}
	truthTTR, predTTR := medTTR(truth), medTTR(fit.Model)
	if rel := math.Abs(float64(predTTR-truthTTR)) / float64(truthTTR); rel > 0.2 {
		t.Errorf("fitted model (conn %s, cmd %s, kill %s) predicts a median ttr of %v for 3000 clients, truth %v",
			fit.Model.ConnCost, fit.Model.CmdCost, fit.Model.KillCost, predTTR, truthTTR)
	}
}

// TestCalibrateFromLabFixture fits a real storm --json result (testdata)
// and checks the fit is usable.
func TestCalibrateFromLabFixture(t *testing.T) {
	b, err := os.ReadFile("testdata/storm_kill_2000.json")
	if err != nil {
		t.Fatal(err)
	}
	obs, err := ParseObservations(b)
	if err != nil {
		t.Fatal(err)
	}
	// bench/simulate.sh's lab run: 2,000 clients, kill, somaxconn 128,
	// PINGs every second (2026-12-02 11:32 UTC; the "timeline" trimmed to
	// −1 s…+3 s around the kill).
	fit, err := Calibrate(context.Background(), DefaultModel(), Fleet{Period: time.Second}, obs[:1])
	if err != nil {
		t.Fatal(err)
	}
	if math.IsNaN(fit.Error) || fit.Error > 0.5 || fit.Model.ConnCost <= 0 {
		t.Errorf("fit %+v", fit)
	}
	// The client side's costs come from the lab's timeline: 2,000 closes
	// seen over ~0.36 s while every client redialled, the busiest 100 ms
	// above the mean.
	if c := fit.Model.NoticeCost + fit.Model.DialCost; c < 50*time.Microsecond || c > 400*time.Microsecond {
		t.Errorf("NoticeCost+DialCost %v from closes of 2000 seen over ~0.36 s", c)
	}
	if fit.Model.ClientBurst <= 1 {
		t.Errorf("ClientBurst %g: the lab's kill was bursty", fit.Model.ClientBurst)
	}
}

func TestParseObservationsErrors(t *testing.T) {
	const ok = `"strategy":"immediate","clients":10,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1`
	for _, in := range []string{
		``, `{`, `[]x`, `{"strategy":"immediate","clients":0}`,
		`{"strategy":"valkey-go","clients":10,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1}`,
		`{"strategy":"immediate","clients":10,"scenario":"kill","time_to_recover_ms":null,"listen_overflows":1,"peak_connects_per_sec":1}`,
		// Nothing to fit: an empty --compare array, a JSON null.
		`[]`, ` null `, `[null]`,
		// Truncated, or an array with something else in it.
		`[{` + ok + `}`, `[{` + ok + `}, "x"]`, `[{` + ok + `}, 3]`,
		// A scenario or fleet the model cannot run.
		`{"strategy":"immediate","clients":10,"scenario":"failover","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1}`,
		`{"strategy":"immediate","clients":2000000,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1}`,
		// Negative or non-integer counts, NaN (not JSON).
		`{` + ok + `,"connect_attempts":-1}`, `{` + ok + `,"hosts":-1}`, `{` + ok + `,"killed_clients":-3}`,
		`{` + ok + `,"timeline_100ms":[5,-1]}`, `{` + ok + `,"timeline":[{"t_ms":0,"connects":-5,"failed_commands":1}]}`,
		`{` + ok + `,"timeline":[{"t_ms":0,"connects":5,"failed_commands":-1}]}`,
		`{"strategy":"immediate","clients":10,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":-1,"peak_connects_per_sec":1}`,
		`{"strategy":"immediate","clients":10.5,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1}`,
		`{"strategy":"immediate","clients":10,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":NaN}`,
		`{"strategy":"immediate","clients":10,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":-3}`,
	} {
		if _, err := ParseObservations([]byte(in)); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: %v, want ErrConfig", in, err)
		}
	}
	for _, in := range []string{`{` + ok + `}`, ` [{` + ok + `}, {` + ok + `}] `} {
		if obs, err := ParseObservations([]byte(in)); err != nil || len(obs) == 0 {
			t.Errorf("%q: %d results, %v", in, len(obs), err)
		}
	}
}

// FuzzParseObservations: whatever the bytes, ParseObservations returns
// an error or results that a fit can use, and never panics. The seeds
// include the real lab result in testdata (a --compare array).
func FuzzParseObservations(f *testing.F) {
	f.Add([]byte(`{"strategy":"immediate","clients":10,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1}`))
	f.Add([]byte(`[{"strategy":"stormguard","clients":1,"scenario":"blip"}]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"strategy":"immediate","clients":10,"scenario":"kill","time_to_recover_ms":5,"listen_overflows":1,"peak_connects_per_sec":1,"timeline":[{"t_ms":-5,"connects":1,"failed_commands":-2}]}`))
	if b, err := os.ReadFile("testdata/storm_kill_2000.json"); err == nil {
		f.Add(b)
		f.Add(b[:len(b)/2]) // truncated
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		obs, err := ParseObservations(b)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		if len(obs) == 0 {
			t.Fatal("no error and no results")
		}
		for _, o := range obs {
			if o.Clients < 1 || o.Clients > MaxClients || o.TimeToRecoverMS == nil || *o.TimeToRecoverMS <= 0 ||
				o.ListenOverflows == nil || o.PeakConnectsPerSec <= 0 || o.ConnectAttempts < 0 || o.Hosts < 0 {
				t.Fatalf("accepted %+v", o)
			}
			for _, p := range o.Points {
				if p.Connects < 0 || p.FailedCommands < 0 {
					t.Fatalf("accepted a negative timeline point %+v", p)
				}
			}
			// What Calibrate reads off the timeline is finite.
			if span, dials, burst, ok := killSpan(o); ok && (span < 0 || math.IsNaN(dials) || math.IsNaN(burst) || dials < 0) {
				t.Fatalf("killSpan(%+v) = %v, %g, %g", o, span, dials, burst)
			}
		}
		_, _ = json.Marshal(obs)
	})
}

// TestCalibrateHostSharedWithFleet is the smoke test of the host model:
// results of a server whose host it shares with a client side that
// grows with the fleet (known ClientCPU and HostLoad), at one fleet
// size and two strategies, are fitted; the fit predicts a fleet twice
// that size within 20% on time to recover. Small fleets: seconds.
func TestCalibrateHostSharedWithFleet(t *testing.T) {
	truth := DefaultModel()
	truth.HostCores, truth.ClientCPU, truth.HostLoad = 2, 200*time.Microsecond, 1
	f := Fleet{Scenario: "kill", Period: time.Second}
	mk := func(n int, strategy string) *Result {
		ff := f
		ff.Clients, ff.Strategy = n, strategy
		return run(t, truth, ff)
	}
	base := DefaultModel()
	base.HostCores = 2
	obs := []Observation{observe(mk(1500, "immediate")), observe(mk(1500, "stormguard"))}
	fit, err := Calibrate(context.Background(), base, f, obs)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"immediate", "stormguard"} {
		check := mk(3000, s)
		ff := f
		ff.Clients, ff.Strategy = 3000, s
		pred := run(t, fit.Model, ff)
		if _, _, rec := Compare(observe(check), pred); math.Abs(rec) > 0.2 {
			t.Errorf("%s: fitted model (conn %s, client cpu %s, host load %g) predicts ttr %v for 3000 clients, truth %v",
				s, fit.Model.ConnCost, fit.Model.ClientCPU, fit.Model.HostLoad, ttr(pred), ttr(check))
		}
	}
}

// TestCalibrateKeepsMeasuredCosts: a CmdCost or ConnCost marked measured
// is kept by the fit, even when the truth's differs (the rest moves
// instead).
func TestCalibrateKeepsMeasuredCosts(t *testing.T) {
	truth := DefaultModel()
	truth.ConnCost = 150 * time.Microsecond
	f := Fleet{Strategy: "full-jitter", Scenario: "restart", Clients: 1500}
	obs := []Observation{observe(run(t, truth, f))}
	for _, tc := range []struct {
		name string
		mark func(*Model)
		cost func(Model) time.Duration
	}{
		{"CmdCost", func(m *Model) { m.CmdCost, m.CmdCostMeasured = 6*time.Microsecond, true }, func(m Model) time.Duration { return m.CmdCost }},
		{"ConnCost", func(m *Model) { m.ConnCost, m.ConnCostMeasured = 8*time.Microsecond, true }, func(m Model) time.Duration { return m.ConnCost }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := DefaultModel()
			tc.mark(&base)
			fit, err := Calibrate(context.Background(), base, f, obs)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tc.cost(fit.Model), tc.cost(base); got != want {
				t.Errorf("measured %s %v fitted to %v, want kept", tc.name, want, got)
			}
		})
	}
}
