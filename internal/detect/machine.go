package detect

import (
	"fmt"
	"time"
)

// machine is the state machine: it consumes one evaluation per sample and
// decides the state, with the quiet periods, relapse escalation and the
// storm episode. It reads no counters and renders no text beyond why a
// quiet period ended.
type machine struct {
	state     State
	since     time.Time
	lastStorm time.Time
	lastSurge time.Time
	relapses  int
	ep        Episode
}

// change is one state change.
type change struct {
	from, to State
	// why is set when a quiet period (or relearning) ended a state, empty
	// when signals caused the change.
	why string
	// episode is the storm summary to attach (into, within and out of
	// storm/recovering), nil otherwise.
	episode *Episode
}

// step advances the machine by one sample and returns the change, if any.
func (m *machine) step(cfg *Config, now time.Time, v *View, e *evaluation) (change, bool) {
	// A clock that jumps backwards must not freeze the quiet timers.
	for _, t := range []*time.Time{&m.lastStorm, &m.lastSurge, &m.since} {
		if t.After(now) {
			*t = now
		}
	}
	if e.storm {
		m.lastStorm = now
	}
	if !e.sighted && (m.state == Storm || m.state == Recovering) && v.IntervalS > 0 {
		// Every drop signal is unreadable (sources timing out mid-storm):
		// a blind interval does not count towards the quiet period.
		if t := m.lastStorm.Add(time.Duration(v.IntervalS * float64(time.Second))); t.Before(now) {
			m.lastStorm = t
		} else {
			m.lastStorm = now
		}
	}
	if e.surge {
		m.lastSurge = now
	}
	if m.state == Storm || m.state == Recovering {
		m.ep.observe(now, v, e.storm)
	}
	from, to := m.state, m.state
	var why string
	switch m.state {
	case Calm:
		switch {
		case e.storm:
			to = Storm
		case e.surge:
			to = Surge
		}
	case Surge:
		switch {
		case e.storm:
			to = Storm
		case e.relearned:
			to, why = Calm, fmt.Sprintf("new-connection rate steady for %s without other signals: accepted as the new normal", cfg.RelearnAfter)
		case !e.surge && now.Sub(m.lastSurge) >= cfg.SurgeQuiet:
			to, why = Calm, fmt.Sprintf("no surge signal for %s", cfg.SurgeQuiet)
		}
	case Storm:
		if q := m.stormQuiet(cfg); !e.storm && now.Sub(m.lastStorm) >= q {
			to, why = Recovering, fmt.Sprintf("no dropped or refused connections for %s", q)
		}
	case Recovering:
		switch {
		case e.storm:
			to = Storm
			m.relapses++
		case !e.storm && !e.surge && now.Sub(later(m.lastStorm, m.lastSurge)) >= cfg.CalmQuiet:
			to, why = Calm, fmt.Sprintf("no storm or surge signal for %s", cfg.CalmQuiet)
		case !e.storm && e.surge && now.Sub(m.lastStorm) >= cfg.CalmQuiet:
			// The storm is over but a warning persists (queue still half
			// full, a forecast): say so rather than "recovering" forever.
			to, why = Surge, fmt.Sprintf("no dropped connections for %s, but early-warning signals persist", cfg.CalmQuiet)
		}
	}
	if to == from {
		return change{}, false
	}
	if to == Storm && from != Recovering {
		m.ep = Episode{Start: now}
		m.ep.observe(now, v, true)
	}
	m.ep.End, m.ep.Relapses = now, m.relapses
	ch := change{from: from, to: to, why: why}
	if from == Storm || from == Recovering || to == Storm {
		ep := m.ep
		ch.episode = &ep
	}
	if to == Calm {
		m.relapses = 0
		m.ep = Episode{}
	}
	m.state, m.since = to, now
	return ch, true
}

// stormQuiet is the quiet time needed to leave storm: StormQuiet, doubled
// per relapse since the last calm, capped at CalmQuiet. A storm that keeps
// coming back in bursts stays one storm instead of flapping.
func (m *machine) stormQuiet(cfg *Config) time.Duration {
	q := cfg.StormQuiet
	for i := 0; i < m.relapses && q < cfg.CalmQuiet; i++ {
		q *= 2
	}
	return min(q, max(cfg.CalmQuiet, cfg.StormQuiet))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
