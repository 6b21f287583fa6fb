package detect

import (
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// Detector follows one target's sample stream. Create it with New; feed it
// with Observe from a single goroutine.
//
// One sample goes through four stages, each owning its own state: the
// deriver (counters → rates, occupancies, forecasts), the baselines
// (learned normal levels), the rules (one function per signal, with their
// memory across samples) and the state machine. Signal texts and the
// event's verdict are rendered last, from the values.
type Detector struct {
	cfg    Config
	target string

	rates deriver
	base  baselines
	mem   ruleMemory
	m     machine

	view View
}

// New returns a detector in state calm. Invalid fields of cfg are replaced
// by their defaults; call cfg.Validate first to reject them instead.
func New(cfg Config) *Detector {
	if cfg.Validate() != nil {
		cfg = Config{Target: cfg.Target}
	}
	cfg = cfg.withDefaults()
	d := &Detector{cfg: cfg, target: cfg.Target}
	d.rates.cfg = &d.cfg
	d.base = newBaselines(&d.cfg)
	return d
}

// Config returns the effective configuration (defaults filled in).
func (d *Detector) Config() Config { return d.cfg }

// State returns the current state and when it was entered (zero before the
// first sample).
func (d *Detector) State() (State, time.Time) { return d.m.state, d.m.since }

// View returns the derived view of the latest sample.
func (d *Detector) View() View { return d.view }

// Observe consumes the next sample of the stream and returns the state
// after it and the state-change events it caused (none or one). A nil
// sample changes nothing.
func (d *Detector) Observe(s *sample.Sample) (State, []Event) {
	if s == nil {
		return d.m.state, nil
	}
	if d.target == "" {
		d.target = s.Target
	}
	if d.m.since.IsZero() {
		d.m.since = s.Time
	}
	v, dv := d.rates.derive(s, d.target)
	levels := d.base.levels(&d.cfg, &dv)
	d.base.annotate(&v, &levels)
	e := d.mem.evaluate(newInput(&d.cfg, d.m.state, &v, &dv, levels, s, d.base.synRecvBase()))
	if e.relearned {
		d.base.relearn(&dv)
	}
	renderTexts(e.signals, &v)
	v.Signals = append(v.Signals, e.signals...)
	ch, changed := d.m.step(&d.cfg, s.Time, &v, &e)
	quiet := d.m.state == Calm && !e.storm && !e.surge
	d.base.learn(s.Time, quiet, &v, &dv)
	v.State, v.Since = d.m.state, d.m.since
	d.view = v
	if !changed {
		return d.m.state, nil
	}
	ev := newEvent(d.target, s.Time, ch, &v, e.signals)
	return d.m.state, []Event{ev}
}
