package simulate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/dialer"
)

// A Candidate is one reconnect setting Advise simulates.
type Candidate struct {
	// Setting names it as a user would write it.
	Setting string
	// Dialer: the setting is the stormguard dialer (else a backoff
	// policy as the lab's clients run it).
	Dialer bool
	// AcceptRate is the dialer's Options.AcceptRate (Dialer only; 0:
	// the fleet size is unknown to it).
	AcceptRate float64
	set        func(f *Fleet)
}

// PolicyCandidate is the backoff policy strategy with p (a setting of
// the user's), named setting.
func PolicyCandidate(setting, strategy string, p backoff.Params) Candidate {
	return Candidate{Setting: setting, set: func(f *Fleet) { f.Strategy, f.Policy = strategy, p }}
}

// Candidates are the settings Advise compares for a server modelled by m:
// the libraries' and the lab's defaults, two full-jitter settings, the
// dialer without a fleet size, and the dialer with the fleet size known
// (connected_clients) at AcceptRates around the model's own accept rate
// and the dialer's default.
func Candidates(m Model) []Candidate {
	g := backoff.DefaultGLIDE()
	g1000 := g
	g1000.Factor = 1000
	cs := []Candidate{
		PolicyCandidate("immediate", "immediate", backoff.Params{}),
		PolicyCandidate("glide (5, 100, 2, 20%)", "glide", backoff.Params{GLIDE: g}),
		PolicyCandidate("glide --factor 1000", "glide", backoff.Params{GLIDE: g1000}),
		PolicyCandidate("full-jitter --base 100ms --cap 10s", "full-jitter", backoff.Params{}),
		PolicyCandidate("full-jitter --base 1s --cap 30s", "full-jitter", backoff.Params{Base: time.Second, Cap: 30 * time.Second}),
		{Setting: "stormguard dialer, fleet size unknown", Dialer: true, set: func(f *Fleet) { f.Strategy, f.Observe = "stormguard", false }},
	}
	rates := []float64{dialer.DefaultAcceptRate}
	ar := m.AcceptRate()
	for _, k := range []float64{0.25, 0.5, 0.75, 1, 1.5} {
		rates = append(rates, roundRate(k*ar))
	}
	slices.Sort(rates)
	for _, r := range slices.Compact(rates) {
		cs = append(cs, Candidate{Setting: fmt.Sprintf("stormguard dialer, AcceptRate %.0f", r), Dialer: true, AcceptRate: r,
			set: func(f *Fleet) { f.Strategy, f.Observe, f.Dialer.AcceptRate = "stormguard", true, r }})
	}
	// The dialer as the lab's instances run it since 2026-12-03: the
	// starting rate told by the server's CPU (INFO server clients cpu
	// stats).
	cs = append(cs, Candidate{Setting: "stormguard dialer, server-told rate", Dialer: true,
		set: func(f *Fleet) { f.Strategy, f.Observe, f.ObserveCPU = "stormguard", true, true }})
	return cs
}

// roundRate rounds r to two significant digits (at least 100/s).
func roundRate(r float64) float64 {
	if r < 100 {
		return 100
	}
	p := math.Pow(10, math.Floor(math.Log10(r))-1)
	return math.Round(r/p) * p
}

// Advice is one candidate's simulated outcome.
type Advice struct {
	Setting    string  `json:"setting"`
	Dialer     bool    `json:"dialer"`
	AcceptRate float64 `json:"dialer_accept_rate,omitempty"`
	// NotSimulated says why the candidate's run was stopped (ErrRunaway:
	// it retries in a tight loop, e.g. immediate against refused
	// connects); its Result then holds only what was counted until then.
	NotSimulated string `json:"not_simulated,omitempty"`
	*Result
}

// Class ranks an outcome: 0 recovered without a listen overflow, 1 with
// overflows under 1% of the clients, 2 under 10%, 3 at most one per
// client, 4 with more, 5 not recovered, 6 not simulated to the end. (A
// kill of a very large fleet keeps Valkey busy long enough that every
// setting overflows a little; 10% keeps the few from the many, and one
// per client keeps a window that mostly held from policies that
// overflowed the whole fleet several times over, which a ranking by
// recovery time alone within "more than 10%" put first.)
func (a Advice) Class() int {
	switch {
	case a.NotSimulated != "":
		return 6
	case !a.Recovered:
		return 5
	case a.ListenOverflows > uint64(a.Clients):
		return 4
	case a.ListenOverflows > uint64(a.Clients)/10:
		return 3
	case a.ListenOverflows > uint64(a.Clients)/100:
		return 2
	case a.ListenOverflows > 0:
		return 1
	}
	return 0
}

// Advise simulates every candidate with the fleet base (its Strategy,
// Policy, Dialer and Observe are the candidate's) against m, and returns
// them best first: by Class, then the fastest recovery. progress, if not
// nil, is called before each simulation.
func Advise(ctx context.Context, m Model, base Fleet, cands []Candidate, progress func(setting string)) ([]Advice, error) {
	var out []Advice
	for _, c := range cands {
		f := base
		f.Strategy, f.Policy, f.Dialer, f.Observe, f.ObserveCPU = "", backoff.Params{}, dialer.Options{}, false, false
		c.set(&f)
		if progress != nil {
			progress(c.Setting)
		}
		a := Advice{Setting: c.Setting, Dialer: c.Dialer, AcceptRate: c.AcceptRate}
		r, err := Run(ctx, m, f)
		switch {
		case errors.Is(err, ErrRunaway):
			// One candidate that spins (immediate on a restart) must
			// not hide the others' answer.
			a.NotSimulated = ErrRunaway.Error()
			r = &Result{Strategy: f.Strategy, Clients: f.Clients, Scenario: f.Scenario, Model: m}
		case err != nil:
			return nil, fmt.Errorf("simulate %s: %w", c.Setting, err)
		}
		a.Result = r
		out = append(out, a)
	}
	ttr := func(a Advice) int64 {
		if a.TimeToRecoverMS == nil {
			return math.MaxInt64
		}
		return *a.TimeToRecoverMS
	}
	slices.SortStableFunc(out, func(a, b Advice) int {
		if c := cmp.Compare(a.Class(), b.Class()); c != 0 {
			return c
		}
		return cmp.Compare(ttr(a), ttr(b))
	})
	return out, nil
}
