package replay

import (
	"sort"

	"github.com/stormguard/stormguard/internal/detect"
)

// Result is what the detector said about a recording.
type Result struct {
	// Events are the state events it raised, in time order (per target in
	// stream order; targets merged by time).
	Events []detect.Event
	// Final is each target's state after the last sample.
	Final map[string]detect.State
	// Samples is how many samples were fed.
	Samples int
}

// Run feeds every sample of rec to a detector per target built with cfg
// (cfg.Target is ignored: each detector takes its target from the
// samples), exactly as the agent feeds it live: the same Observe calls, in
// order, with the recording's timestamps. A restart record replaces the
// target's detector with a fresh one. cfg must be valid (see LoadConfig).
func Run(cfg detect.Config, rec *Recording) Result {
	cfg.Target = ""
	dets := map[string]*detect.Detector{}
	res := Result{Final: map[string]detect.State{}}
	for _, r := range rec.Records {
		if r.Restart {
			delete(dets, r.Target)
			continue
		}
		d := dets[r.Target]
		if d == nil {
			d = detect.New(cfg)
			dets[r.Target] = d
		}
		st, evs := d.Observe(r.Sample)
		res.Samples++
		res.Final[r.Target] = st
		res.Events = append(res.Events, evs...)
	}
	sort.SliceStable(res.Events, func(i, j int) bool { return res.Events[i].Time.Before(res.Events[j].Time) })
	return res
}
