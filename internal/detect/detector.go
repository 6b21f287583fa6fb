package detect

import (
	"fmt"
	"math"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// counter indexes into Detector.counters.
const (
	cPassive = iota
	cValkeyConns
	cOverflows
	cDrops
	cReqQDrop
	cReqQCookies
	cSynRetrans
	cAttemptFails
	cCtDrop
	cCtEarlyDrop
	cCtInsertFailed
	cNICConntrack
	cNICPPS
	cRejected
	nCounters
)

var counterNames = [nCounters]string{
	"tcp.passive_opens", "valkey.total_connections_received", "tcp.listen_overflows",
	"tcp.listen_drops", "tcp.reqq_full_drop", "tcp.reqq_full_do_cookies", "tcp.syn_retrans",
	"tcp.attempt_fails", "conntrack.drop", "conntrack.early_drop", "conntrack.insert_failed",
	"nic.conntrack_allowance_exceeded", "nic.pps_allowance_exceeded", "valkey.rejected_connections",
}

// counter remembers the last reading of one cumulative counter.
type counter struct {
	v  uint64
	t  time.Time
	ok bool
}

// delta is one interval of one counter.
type delta struct {
	n    uint64
	rate float64
	ok   bool
}

// step consumes a reading. A nil reading keeps the previous one, so a source
// that misses one sample yields an average over the longer span next time
// (up to maxGap). A lower reading is a reset: no rate this interval.
func (c *counter) step(cur *uint64, t time.Time, maxGap time.Duration) (d delta, reset bool) {
	if cur == nil {
		return delta{}, false
	}
	prev, prevT, had := c.v, c.t, c.ok
	c.v, c.t, c.ok = *cur, t, true
	if !had {
		return delta{}, false
	}
	span := t.Sub(prevT)
	if span <= 0 || span > maxGap {
		return delta{}, false
	}
	if *cur < prev {
		return delta{}, true
	}
	n := *cur - prev
	return delta{n: n, rate: float64(n) / span.Seconds(), ok: true}, false
}

// Detector follows one target's sample stream. Create it with New; feed it
// with Observe from a single goroutine.
type Detector struct {
	cfg    Config
	target string

	state State
	since time.Time

	counters [nCounters]counter
	deltas   [nCounters]delta // of the latest sample
	lastTime time.Time
	hasLast  bool

	passiveBase, valkeyBase, pingBase *baseline
	ctHist, clientsHist, acceptHist   gaugeHist
	// passiveHist and valkeyHist hold the cumulative new-connection
	// counters; their slope over RateWindow is the smoothed rate the surge
	// rule and the baselines use.
	passiveHist, valkeyHist     gaugeHist
	smoothPassive, smoothValkey *float64

	pingHigh      int
	lastStorm     time.Time
	lastSurge     time.Time
	relapses      int
	rateOnlySince time.Time

	ep   Episode
	view View
}

// New returns a detector in state calm. Invalid fields of cfg are replaced
// by their defaults; call cfg.Validate first to reject them instead.
func New(cfg Config) *Detector {
	if cfg.Validate() != nil {
		cfg = Config{Target: cfg.Target}
	}
	cfg = cfg.withDefaults()
	return &Detector{
		cfg:         cfg,
		target:      cfg.Target,
		passiveBase: newBaseline(cfg.BaselineBucket, cfg.BaselineBuckets, cfg.BaselineMinBuckets),
		valkeyBase:  newBaseline(cfg.BaselineBucket, cfg.BaselineBuckets, cfg.BaselineMinBuckets),
		pingBase:    newBaseline(cfg.BaselineBucket, cfg.BaselineBuckets, cfg.BaselineMinBuckets),
	}
}

// Config returns the effective configuration (defaults filled in).
func (d *Detector) Config() Config { return d.cfg }

// State returns the current state and when it was entered (zero before the
// first sample).
func (d *Detector) State() (State, time.Time) { return d.state, d.since }

// View returns the derived view of the latest sample.
func (d *Detector) View() View { return d.view }

// Observe consumes the next sample of the stream and returns the state
// after it and the state-change events it caused (none or one). A nil
// sample changes nothing.
func (d *Detector) Observe(s *sample.Sample) (State, []Event) {
	if s == nil {
		return d.state, nil
	}
	if d.target == "" {
		d.target = s.Target
	}
	if d.since.IsZero() {
		d.since = s.Time
	}
	v := d.derive(s)
	e := evaluate(d, s, &v)
	v.Signals = append(v.Signals, e.signals...)
	ev := d.transition(s.Time, &v, e)
	d.learn(s.Time, &v, e)
	v.State, v.Since = d.state, d.since
	d.view = v
	if ev == nil {
		return d.state, nil
	}
	ev.Evidence.View = v
	ev.Evidence.View.Signals = nil // already in Evidence.Signals
	return d.state, []Event{*ev}
}

// derive computes rates, occupancies and forecasts.
func (d *Detector) derive(s *sample.Sample) View {
	v := View{Time: s.Time, Target: d.target, Signals: []Signal{}}
	if d.hasLast {
		if dt := s.Time.Sub(d.lastTime).Seconds(); dt > 0 {
			v.IntervalS = dt
		}
	}
	d.lastTime, d.hasLast = s.Time, true

	var readings [nCounters]*uint64
	if t := s.TCP; t != nil {
		readings[cPassive] = t.PassiveOpens
		readings[cOverflows] = t.ListenOverflows
		readings[cDrops] = t.ListenDrops
		readings[cReqQDrop] = t.ReqQFullDrop
		readings[cReqQCookies] = t.ReqQFullDoCookies
		readings[cSynRetrans] = t.SynRetrans
		readings[cAttemptFails] = t.AttemptFails
	}
	if c := s.Conntrack; c != nil {
		readings[cCtDrop] = c.Drop
		readings[cCtEarlyDrop] = c.EarlyDrop
		readings[cCtInsertFailed] = c.InsertFailed
	}
	if n := s.NIC; n != nil {
		readings[cNICConntrack] = n.ConntrackAllowanceExceeded
		readings[cNICPPS] = n.PPSAllowanceExceeded
	}
	if k := s.Valkey; k != nil {
		readings[cValkeyConns] = k.TotalConnectionsReceived
		readings[cRejected] = k.RejectedConnections
	}
	var deltas [nCounters]delta
	for i := range readings {
		var reset bool
		deltas[i], reset = d.counters[i].step(readings[i], s.Time, d.cfg.MaxGap)
		if reset {
			v.Resets = append(v.Resets, counterNames[i])
		}
	}
	d.deltas = deltas
	d.smoothPassive = d.smoothRate(&d.passiveHist, readings[cPassive], deltas[cPassive], s.Time)
	d.smoothValkey = d.smoothRate(&d.valkeyHist, readings[cValkeyConns], deltas[cValkeyConns], s.Time)
	r := &v.Rates
	dst := [nCounters]**float64{
		&r.PassiveOpens, &r.ValkeyConnections, &r.ListenOverflows, &r.ListenDrops,
		&r.ReqQFullDrop, &r.ReqQFullDoCookies, &r.SynRetrans, &r.AttemptFails,
		&r.ConntrackDrop, &r.ConntrackEarlyDrop, &r.ConntrackInsertFailed,
		&r.NICConntrackAllowance, &r.NICPPSAllowance, &r.ValkeyRejectedConnections,
	}
	for i, p := range dst {
		if deltas[i].ok {
			*p = f64(deltas[i].rate)
		}
	}
	// Dropped or refused connections per second, from every layer that
	// reports it. ListenDrops already includes ListenOverflows and
	// ReqQFullDrop; fall back to their sum when it is missing.
	var dropped float64
	var anyDrop bool
	if r.ListenDrops != nil {
		dropped, anyDrop = dropped+*r.ListenDrops, true
	} else {
		for _, p := range []*float64{r.ListenOverflows, r.ReqQFullDrop} {
			if p != nil {
				dropped, anyDrop = dropped+*p, true
			}
		}
	}
	for _, p := range []*float64{r.ConntrackDrop, r.NICConntrackAllowance, r.ValkeyRejectedConnections} {
		if p != nil {
			dropped, anyDrop = dropped+*p, true
		}
	}
	if anyDrop {
		v.DroppedRate = f64(dropped)
	}

	// Gauges.
	if l := s.Listen; l != nil {
		v.AcceptDepth, v.AcceptDepthMax, v.AcceptLimit = l.Depth, l.DepthMax, l.Limit
		peak := l.DepthMax
		if peak == nil {
			peak = l.Depth
		}
		if peak != nil && l.Limit != nil && *l.Limit > 0 {
			v.AcceptOccupancy = f64(float64(*peak) / float64(*l.Limit))
			d.acceptHist.add(s.Time, float64(*peak))
			if sl, ok := d.acceptHist.slope(d.cfg.ForecastWindow, d.cfg.MaxGap); ok {
				v.Forecasts.AcceptFullS = timeToFull(float64(*peak), float64(*l.Limit), sl)
			}
		}
	}
	v.SynRecv = s.SynRecv
	if c := s.Conntrack; c != nil {
		v.ConntrackCount, v.ConntrackMax = c.Count, c.Max
		if c.Count != nil {
			d.ctHist.add(s.Time, float64(*c.Count))
			if c.Max != nil && *c.Max > 0 {
				v.ConntrackOccupancy = f64(float64(*c.Count) / float64(*c.Max))
				if sl, ok := d.ctHist.slope(d.cfg.ForecastWindow, d.cfg.MaxGap); ok {
					v.Forecasts.ConntrackFullS = timeToFull(float64(*c.Count), float64(*c.Max), sl)
				}
			}
		}
	}
	if k := s.Valkey; k != nil {
		v.ConnectedClients, v.MaxClients = k.ConnectedClients, k.MaxClients
		if p := k.PingMS; p != nil && !math.IsNaN(*p) && !math.IsInf(*p, 0) && *p >= 0 {
			v.PingMS = p
		}
		if k.ConnectedClients != nil {
			d.clientsHist.add(s.Time, float64(*k.ConnectedClients))
			if k.MaxClients != nil && *k.MaxClients > 0 {
				v.ClientsOccupancy = f64(float64(*k.ConnectedClients) / float64(*k.MaxClients))
				if sl, ok := d.clientsHist.slope(d.cfg.ForecastWindow, d.cfg.MaxGap); ok {
					v.Forecasts.MaxclientsFullS = timeToFull(float64(*k.ConnectedClients), float64(*k.MaxClients), sl)
				}
			}
		}
	}
	if b, ok := d.pingBase.value(); ok {
		v.PingBaselineMS = f64(b)
	}
	return v
}

// smoothRate feeds a cumulative counter into its history and returns its
// rate over RateWindow. A reset (or a gap: no interval rate although there
// is a reading) clears the history so no rate spans it.
func (d *Detector) smoothRate(h *gaugeHist, cur *uint64, dl delta, t time.Time) *float64 {
	if cur == nil {
		return nil
	}
	if !dl.ok {
		h.clear()
	}
	h.add(t, float64(*cur))
	if r, ok := h.slope(d.cfg.RateWindow, d.cfg.MaxGap); ok && r >= 0 {
		return f64(r)
	}
	return nil
}

// timeToFull returns the seconds until cur reaches max at slope per second,
// or nil when it is not growing. Already full is 0.
func timeToFull(cur, max, slope float64) *float64 {
	if cur >= max {
		return f64(0)
	}
	if slope <= 0 || math.IsNaN(slope) || math.IsInf(slope, 0) {
		return nil
	}
	return f64((max - cur) / slope)
}

// transition runs the state machine and returns the event for a change.
func (d *Detector) transition(now time.Time, v *View, e evaluation) *Event {
	// A clock that jumps backwards must not freeze the quiet timers.
	for _, t := range []*time.Time{&d.lastStorm, &d.lastSurge, &d.since} {
		if t.After(now) {
			*t = now
		}
	}
	if e.storm {
		d.lastStorm = now
	}
	if !e.sighted && (d.state == Storm || d.state == Recovering) && v.IntervalS > 0 {
		// Every drop signal is unreadable (sources timing out mid-storm):
		// a blind interval does not count towards the quiet period.
		if t := d.lastStorm.Add(time.Duration(v.IntervalS * float64(time.Second))); t.Before(now) {
			d.lastStorm = t
		} else {
			d.lastStorm = now
		}
	}
	if e.surge {
		d.lastSurge = now
	}
	if d.state == Storm || d.state == Recovering {
		d.ep.observe(now, v, e.storm)
	}
	from, to := d.state, d.state
	var why string
	switch d.state {
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
			to, why = Calm, fmt.Sprintf("new-connection rate steady for %s without other signals: accepted as the new normal", d.cfg.RelearnAfter)
		case !e.surge && now.Sub(d.lastSurge) >= d.cfg.SurgeQuiet:
			to, why = Calm, fmt.Sprintf("no surge signal for %s", d.cfg.SurgeQuiet)
		}
	case Storm:
		if q := d.stormQuiet(); !e.storm && now.Sub(d.lastStorm) >= q {
			to, why = Recovering, fmt.Sprintf("no dropped or refused connections for %s", q)
		}
	case Recovering:
		switch {
		case e.storm:
			to = Storm
			d.relapses++
		case !e.storm && !e.surge && now.Sub(later(d.lastStorm, d.lastSurge)) >= d.cfg.CalmQuiet:
			to, why = Calm, fmt.Sprintf("no storm or surge signal for %s", d.cfg.CalmQuiet)
		case !e.storm && e.surge && now.Sub(d.lastStorm) >= d.cfg.CalmQuiet:
			// The storm is over but a warning persists (queue still half
			// full, a forecast): say so rather than "recovering" forever.
			to, why = Surge, fmt.Sprintf("no dropped connections for %s, but early-warning signals persist", d.cfg.CalmQuiet)
		}
	}
	if to == from {
		return nil
	}
	ev := &Event{
		Time:      now,
		Type:      "state",
		Target:    d.target,
		From:      from,
		To:        to,
		StateCode: to.Code(),
	}
	if to == Storm && from != Recovering {
		d.ep = Episode{Start: now}
		d.ep.observe(now, v, true)
	}
	d.ep.End, d.ep.Relapses = now, d.relapses
	ev.Reason = reasonFor(e.signals, to, why)
	ev.Verdict = verdictFor(d.target, from, to, v, e.signals, &d.ep, why)
	ev.Evidence = newEvidence(e.signals)
	if from == Storm || from == Recovering || to == Storm {
		ep := d.ep
		ev.Evidence.Episode = &ep
	}
	if to == Calm {
		d.relapses = 0
		d.ep = Episode{}
	}
	if to != Surge {
		d.rateOnlySince = time.Time{}
	}
	d.state, d.since = to, now
	return ev
}

// stormQuiet is the quiet time needed to leave storm: StormQuiet, doubled
// per relapse since the last calm, capped at CalmQuiet. A storm that keeps
// coming back in bursts stays one storm instead of flapping.
func (d *Detector) stormQuiet() time.Duration {
	q := d.cfg.StormQuiet
	for i := 0; i < d.relapses && q < d.cfg.CalmQuiet; i++ {
		q *= 2
	}
	return min(q, max(d.cfg.CalmQuiet, d.cfg.StormQuiet))
}

// learn updates baselines from calm samples only, and relearns the
// new-connection baseline after a long, harmless rate-only surge.
func (d *Detector) learn(now time.Time, v *View, e evaluation) {
	if d.state != Calm || e.storm || e.surge {
		d.passiveBase.discard()
		d.valkeyBase.discard()
		d.pingBase.discard()
		return
	}
	if r := d.smoothPassive; r != nil {
		d.passiveBase.add(now, *r)
	}
	if r := d.smoothValkey; r != nil {
		d.valkeyBase.add(now, *r)
	}
	if p := v.PingMS; p != nil {
		d.pingBase.add(now, *p)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func f64(v float64) *float64 { return &v }
