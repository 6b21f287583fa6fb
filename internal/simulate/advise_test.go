package simulate

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stormguard/stormguard/backoff"
)

func TestRoundRate(t *testing.T) {
	for _, tt := range []struct{ in, want float64 }{
		{16129, 16000}, {4032.25, 4000}, {12096, 12000}, {24193, 24000}, {1234, 1200}, {987, 990}, {42, 100},
	} {
		if got := roundRate(tt.in); got != tt.want {
			t.Errorf("roundRate(%g) = %g, want %g", tt.in, got, tt.want)
		}
	}
}

// TestCandidatesAroundServer: the dialer's accept rates tried bracket the
// model's own accept rate and include the dialer's default; the policies
// are all there once.
func TestCandidatesAroundServer(t *testing.T) {
	m := withRate(DefaultModel(), 4000)
	var rates []float64
	names := map[string]bool{}
	for _, c := range Candidates(m) {
		if names[c.Setting] {
			t.Errorf("candidate %q twice", c.Setting)
		}
		names[c.Setting] = true
		if c.Dialer && c.AcceptRate > 0 {
			rates = append(rates, c.AcceptRate)
		}
	}
	for _, want := range []float64{1000, 2000, 3000, 4000, 6000} {
		if !slices.Contains(rates, want) {
			t.Errorf("dialer accept rates %v lack %g", rates, want)
		}
	}
	for _, want := range []string{"immediate", "glide (5, 100, 2, 20%)", "full-jitter --base 1s --cap 30s", "stormguard dialer, fleet size unknown"} {
		if !names[want] {
			t.Errorf("no candidate %q", want)
		}
	}
}

// withRate sets the per-connection cost for an idle accept rate.
func withRate(m Model, rate float64) Model {
	m = m.withDefaults()
	per := float64(m.MaxNewConnsPerCycle)
	m.ConnCost = time.Duration((per/rate - m.CycleCost.Seconds()) / per * float64(time.Second))
	return m
}

func TestAdviseRanks(t *testing.T) {
	m := DefaultModel()
	rows, err := Advise(context.Background(), m, Fleet{Clients: 400, Scenario: "kill"}, Candidates(m), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(Candidates(m)) {
		t.Fatalf("%d rows for %d candidates", len(rows), len(Candidates(m)))
	}
	for i := 1; i < len(rows); i++ {
		a, b := rows[i-1], rows[i]
		if a.Class() > b.Class() {
			t.Errorf("%q (class %d) before %q (class %d)", a.Setting, a.Class(), b.Setting, b.Class())
		}
		if a.Class() == b.Class() && a.TimeToRecoverMS != nil && b.TimeToRecoverMS != nil && *a.TimeToRecoverMS > *b.TimeToRecoverMS {
			t.Errorf("%q (%d ms) before the faster %q (%d ms) in one class", a.Setting, *a.TimeToRecoverMS, b.Setting, *b.TimeToRecoverMS)
		}
	}
}

func TestAdviceClass(t *testing.T) {
	ms := func(v int64) *int64 { return &v }
	for _, tt := range []struct {
		ovf       uint64
		recovered bool
		want      int
	}{
		{0, true, 0}, {5, true, 1}, {10, true, 1}, {11, true, 2}, {100, true, 2}, {101, true, 3}, {1000, true, 3},
		{1001, true, 4}, {580000, true, 4}, {0, false, 5}, {5000, false, 5},
	} {
		a := Advice{Result: &Result{Clients: 1000, ListenOverflows: tt.ovf, Recovered: tt.recovered}}
		if tt.recovered {
			a.TimeToRecoverMS = ms(1000)
		}
		if got := a.Class(); got != tt.want {
			t.Errorf("%d overflows, recovered %v: class %d, want %d", tt.ovf, tt.recovered, got, tt.want)
		}
	}
}

// TestAdviseRunaway: immediate against a restarting server redials every
// RTT (the lab's immediate clients do too); the run stops at its event
// budget with ErrRunaway, in bounded memory, and Advise ranks that
// candidate last instead of failing the whole comparison.
func TestAdviseRunaway(t *testing.T) {
	m := DefaultModel()
	// A smaller queue limit than the default (1 M events) keeps the test
	// fast; the default is exercised by the CLI (docs/backoff.md).
	f := Fleet{Clients: 100, Strategy: "immediate", Scenario: "restart", pendingMax: 20_000}
	if _, err := Run(context.Background(), m, f); !errors.Is(err, ErrRunaway) || !errors.Is(err, ErrConfig) {
		t.Fatalf("immediate on restart: %v, want ErrRunaway and ErrConfig", err)
	}
	cands := []Candidate{
		PolicyCandidate("immediate", "immediate", backoff.Params{}),
		PolicyCandidate("glide", "glide", backoff.Params{GLIDE: backoff.DefaultGLIDE()}),
	}
	f.Strategy = ""
	rows, err := Advise(context.Background(), m, f, cands, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Setting != "glide" || rows[0].NotSimulated != "" || !rows[0].Recovered ||
		rows[1].Setting != "immediate" || rows[1].NotSimulated == "" || rows[1].Class() != 6 {
		t.Fatalf("rows %+v, %+v; want glide simulated first, immediate not simulated last", rows[0], rows[1])
	}
}
