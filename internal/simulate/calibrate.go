package simulate

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
)

// Observation is what --calibrate reads from a `stormguard storm --json`
// result (one object, or the first of a --compare array): the keys the
// fit needs. Other keys are ignored.
type Observation struct {
	Strategy           string  `json:"strategy"`
	Clients            int     `json:"clients"`
	Scenario           string  `json:"scenario"`
	ConnectAttempts    int64   `json:"connect_attempts"`
	PeakConnectsPerSec int64   `json:"peak_connects_per_sec"`
	TimeToRecoverMS    *int64  `json:"time_to_recover_ms"`
	ListenOverflows    *uint64 `json:"listen_overflows"`
	Timeline           []int64 `json:"timeline_100ms"`
}

// ParseObservations reads storm --json output: one object or an array.
func ParseObservations(b []byte) ([]Observation, error) {
	var arr []Observation
	if err := json.Unmarshal(b, &arr); err != nil {
		var one Observation
		if err2 := json.Unmarshal(b, &one); err2 != nil {
			return nil, fmt.Errorf("%w: not a storm --json result: %v", ErrConfig, err2)
		}
		arr = []Observation{one}
	}
	for i, o := range arr {
		switch {
		case o.Clients < 1 || o.Clients > MaxClients:
			return nil, fmt.Errorf("%w: result %d: clients %d out of range", ErrConfig, i, o.Clients)
		case !slices.Contains(Strategies, o.Strategy):
			return nil, fmt.Errorf("%w: result %d: strategy %q is not modelled", ErrConfig, i, o.Strategy)
		case !slices.Contains(Scenarios, o.Scenario):
			return nil, fmt.Errorf("%w: result %d: scenario %q is not modelled", ErrConfig, i, o.Scenario)
		case o.TimeToRecoverMS == nil || *o.TimeToRecoverMS <= 0:
			return nil, fmt.Errorf("%w: result %d: no time_to_recover_ms (the run did not recover): nothing to fit", ErrConfig, i)
		case o.ListenOverflows == nil:
			return nil, fmt.Errorf("%w: result %d: no listen_overflows", ErrConfig, i)
		case o.PeakConnectsPerSec <= 0:
			return nil, fmt.Errorf("%w: result %d: no peak_connects_per_sec", ErrConfig, i)
		}
	}
	return arr, nil
}

// Fit is the outcome of a calibration.
type Fit struct {
	Model Model `json:"model"`
	// Error is the fit's mean relative error over the observations on
	// peak connect rate, overflows and time to recover.
	Error float64 `json:"error"`
	Runs  int     `json:"runs"`
}

// Calibrate fits the server's costs (ConnCost, CmdCost) and the client
// side's dial rate to the observations, starting from base (which holds
// the kernel and Valkey settings of the lab run). The client dial rate
// comes from the busiest 100 ms of an observation whose clients all
// redialled at once; the costs from a coarse-to-fine grid search that
// minimises the relative error on overflows and time to recover. f holds
// the fleet settings other than Clients, Strategy and Scenario.
func Calibrate(ctx context.Context, base Model, f Fleet, obs []Observation) (Fit, error) {
	if len(obs) == 0 {
		return Fit{}, fmt.Errorf("%w: nothing to calibrate on", ErrConfig)
	}
	m := base.withDefaults()
	// The generator's ceiling: the highest per-bucket rate seen by a
	// strategy that redials at once (every client within one Period).
	for _, o := range obs {
		if o.Strategy == "immediate" || o.Strategy == "fixed" {
			m.ClientDialRate = max(m.ClientDialRate, float64(o.PeakConnectsPerSec))
		}
	}
	runs := 0
	score := func(m Model) (float64, error) {
		var sum float64
		for _, o := range obs {
			ff := f
			ff.Clients, ff.Strategy, ff.Scenario = o.Clients, o.Strategy, o.Scenario
			r, err := Run(ctx, m, ff)
			if err != nil {
				return 0, err
			}
			runs++
			sum += errorOf(o, r)
		}
		return sum / float64(len(obs)), nil
	}
	best, err := score(m)
	if err != nil {
		return Fit{}, err
	}
	// Coarse to fine over log-spaced costs.
	conn, cmd := m.ConnCost, max(m.CmdCost, 100*time.Nanosecond)
	for _, span := range []float64{8, 2.5, 1.3} {
		bc, bm := conn, cmd
		for _, fc := range logSteps(span, 7) {
			for _, fm := range logSteps(span, 5) {
				t := m
				t.ConnCost = time.Duration(float64(conn) * fc)
				t.CmdCost = time.Duration(float64(cmd) * fm)
				if t.ConnCost <= 0 {
					continue
				}
				s, err := score(t)
				if err != nil {
					return Fit{}, err
				}
				if s < best {
					best, bc, bm = s, t.ConnCost, t.CmdCost
				}
			}
		}
		conn, cmd = bc, bm
	}
	m.ConnCost, m.CmdCost = conn, cmd
	return Fit{Model: m, Error: best, Runs: runs}, nil
}

// logSteps returns n factors from 1/span to span, log-spaced.
func logSteps(span float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = math.Pow(span, -1+2*float64(i)/float64(n-1))
	}
	return out
}

// errorOf is the mean relative error of r against o on the three
// quantities the comparison is about. Overflows get +50 on both sides so
// that 0 against 3 is not an infinite error.
func errorOf(o Observation, r *Result) float64 {
	rel := func(sim, obs float64) float64 { return math.Abs(sim-obs) / math.Max(obs, 1) }
	e := rel(float64(r.PeakConnectsPerSec), float64(o.PeakConnectsPerSec))
	e += rel(float64(r.ListenOverflows)+50, float64(*o.ListenOverflows)+50)
	if r.TimeToRecoverMS == nil {
		e += 1
	} else {
		e += rel(float64(*r.TimeToRecoverMS), float64(*o.TimeToRecoverMS))
	}
	return e / 3
}

// Compare returns the relative differences of r from o: peak connect
// rate, overflows and time to recover (sim−lab)/lab; a missing time is
// +Inf.
func Compare(o Observation, r *Result) (peak, overflows, recover float64) {
	peak = (float64(r.PeakConnectsPerSec) - float64(o.PeakConnectsPerSec)) / math.Max(float64(o.PeakConnectsPerSec), 1)
	overflows = (float64(r.ListenOverflows) - float64(*o.ListenOverflows)) / math.Max(float64(*o.ListenOverflows), 1)
	recover = math.Inf(1)
	if r.TimeToRecoverMS != nil {
		recover = (float64(*r.TimeToRecoverMS) - float64(*o.TimeToRecoverMS)) / float64(*o.TimeToRecoverMS)
	}
	return
}
