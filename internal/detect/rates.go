package detect

import (
	"math"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// deriver turns cumulative counters and gauges into per-interval deltas,
// per-second rates, occupancies and forecasts. It knows nothing of states
// or signals.
type deriver struct {
	cfg *Config

	counters [nCounters]counter
	lastTime time.Time
	hasLast  bool

	ctHist, clientsHist, acceptHist, estabHist gaugeHist
	// lastDepth is the previous sample's instant accept-queue depth
	// (nil: unknown): the queue as this interval began.
	lastDepth *uint64
	// passiveHist and valkeyHist hold the cumulative new-connection
	// counters; their slope over RateWindow is the smoothed rate the
	// new-connection rule and the baselines use.
	passiveHist, valkeyHist gaugeHist
	// lastValkeySpan is the valkey counters' last interval (see
	// derived.valkeySpan).
	lastValkeySpan time.Duration
}

// derived is what the rules read besides the View: the raw interval
// deltas and the smoothed new-connection rates.
type derived struct {
	deltas [nCounters]delta
	// smoothPassive and smoothValkey are the new-connection rates over
	// RateWindow (nil: unavailable).
	smoothPassive, smoothValkey *float64
	// clientsGrowth is connected_clients' growth per second over
	// RateWindow (nil: unavailable); estabGrowth the same for this
	// port's ESTABLISHED sockets.
	clientsGrowth, estabGrowth *float64
	// startDepth is the accept-queue depth at the previous sample's
	// instant, i.e. as this interval began (nil: unknown).
	startDepth *uint64
	// valkeySpan is the time between the valkey readings
	// handshake_pending spans (0: unknown).
	valkeySpan time.Duration
	// Sustained growth (in both halves of the window) of the accept
	// queue over the trend window, and of conntrack entries and clients
	// over ForecastWindow: what makes a forecast a trend, not a spike.
	acceptRising, conntrackRising, clientsRising bool
}

// derive computes rates, occupancies and forecasts for s.
func (r *deriver) derive(s *sample.Sample, target string) (View, derived) {
	cfg := r.cfg
	v := View{Time: s.Time, Target: target, Signals: []Signal{}}
	var dv derived
	if r.hasLast {
		if dt := s.Time.Sub(r.lastTime).Seconds(); dt > 0 {
			v.IntervalS = dt
		}
	}
	r.lastTime, r.hasLast = s.Time, true

	var readings [nCounters]*uint64
	for i, c := range counterTable {
		readings[i] = c.read(s)
		var reset bool
		if at, carried := carriedAt(s, c.source); carried {
			dv.deltas[i], reset = r.counters[i].carried(readings[i], at, cfg.MaxGap)
		} else {
			dv.deltas[i], reset = r.counters[i].step(readings[i], s.Time, cfg.MaxGap)
		}
		if reset {
			v.Resets = append(v.Resets, c.name)
		}
		if dv.deltas[i].ok || r.counters[i].hasRate && readings[i] != nil {
			*c.rate(&v.Rates) = f64(r.counters[i].rate)
		}
	}
	dv.smoothPassive = r.smoothRate(&r.passiveHist, readings[cPassive], dv.deltas[cPassive], s, "tcp")
	dv.smoothValkey = r.smoothRate(&r.valkeyHist, readings[cValkeyConns], dv.deltas[cValkeyConns], s, "valkey")
	if _, carried := carriedAt(s, "valkey"); !carried {
		// A carried HandshakePending spans the valkey counters' last
		// interval, not this sample's (sample.Sampler.derive).
		dv.valkeySpan = dv.deltas[cValkeyConns].span
	} else {
		dv.valkeySpan = r.lastValkeySpan
	}
	r.lastValkeySpan = dv.valkeySpan
	v.DroppedRate = droppedRate(&v.Rates)

	// Gauges.
	dv.startDepth, r.lastDepth = r.lastDepth, nil
	if l := s.Listen; l != nil {
		r.lastDepth = l.Depth
		v.AcceptDepth, v.AcceptDepthMax, v.AcceptLimit = l.Depth, l.DepthMax, l.Limit
		peak := l.DepthMax
		if peak == nil {
			peak = l.Depth
		}
		if peak != nil && l.Limit != nil && *l.Limit > 0 {
			v.AcceptOccupancy = f64(float64(*peak) / float64(*l.Limit))
			r.acceptHist.add(s.Time, float64(*peak))
			dv.acceptRising = r.acceptHist.sustainedGrowthFrom(trendWindow(cfg, v.IntervalS), float64(cfg.AcceptMinDepth))
			if sl, ok := r.acceptHist.slope(cfg.ForecastWindow, cfg.MaxGap); ok {
				v.Forecasts.AcceptFullS = timeToFull(float64(*peak), float64(*l.Limit), sl)
			}
		}
	}
	v.SynRecv = s.SynRecv
	if aw := s.AcceptWaitMS; aw != nil && aw.P99 != nil && !math.IsNaN(*aw.P99) && !math.IsInf(*aw.P99, 0) && *aw.P99 >= 0 {
		v.AcceptWaitP99MS = aw.P99
	}
	if s.Established != nil {
		r.estabHist.add(s.Time, float64(*s.Established))
		if g, ok := r.estabHist.slope(cfg.RateWindow, cfg.MaxGap); ok {
			dv.estabGrowth = f64(g)
		}
	}
	if c := s.Conntrack; c != nil {
		v.ConntrackCount, v.ConntrackMax = c.Count, c.Max
		if _, carried := carriedAt(s, "conntrack"); c.Count != nil && (!carried || r.ctHist.n == 0) {
			r.ctHist.add(s.Time, float64(*c.Count))
		}
		if c.Count != nil {
			dv.conntrackRising = r.ctHist.sustainedGrowth(cfg.ForecastWindow)
			if c.Max != nil && *c.Max > 0 {
				v.ConntrackOccupancy = f64(float64(*c.Count) / float64(*c.Max))
				if sl, ok := r.ctHist.slope(cfg.ForecastWindow, cfg.MaxGap); ok {
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
		if _, carried := carriedAt(s, "valkey"); k.ConnectedClients != nil && (!carried || r.clientsHist.n == 0) {
			r.clientsHist.add(s.Time, float64(*k.ConnectedClients))
		}
		if k.ConnectedClients != nil {
			dv.clientsRising = r.clientsHist.sustainedGrowth(cfg.ForecastWindow)
			if g, ok := r.clientsHist.slope(cfg.RateWindow, cfg.MaxGap); ok {
				dv.clientsGrowth = f64(g)
			}
			if k.MaxClients != nil && *k.MaxClients > 0 {
				v.ClientsOccupancy = f64(float64(*k.ConnectedClients) / float64(*k.MaxClients))
				if sl, ok := r.clientsHist.slope(cfg.ForecastWindow, cfg.MaxGap); ok {
					v.Forecasts.MaxclientsFullS = timeToFull(float64(*k.ConnectedClients), float64(*k.MaxClients), sl)
				}
			}
		}
	}
	return v, dv
}

// trendWindow is TrendWindow, but at least two sampling intervals: a trend
// needs three readings.
func trendWindow(cfg *Config, intervalS float64) time.Duration {
	return max(cfg.TrendWindow, time.Duration(2*intervalS*float64(time.Second)))
}

// droppedRate sums the dropped or refused connections per second from
// every layer that reports them, nil when none does. ListenDrops already
// includes ListenOverflows and ReqQFullDrop; their sum stands in when it
// is missing.
func droppedRate(r *Rates) *float64 {
	var dropped float64
	var any bool
	if r.ListenDrops != nil {
		dropped, any = dropped+*r.ListenDrops, true
	} else {
		for _, p := range []*float64{r.ListenOverflows, r.ReqQFullDrop} {
			if p != nil {
				dropped, any = dropped+*p, true
			}
		}
	}
	if p := r.PortOverflows; p != nil {
		// This port's drops are among the namespace's: the larger of the
		// two, not their sum (the port's count is read by another source
		// and may show drops the namespace counter showed a sample ago).
		dropped, any = max(dropped, *p), true
	}
	for _, p := range []*float64{r.ConntrackDrop, r.NICConntrackAllowance, r.ValkeyRejectedConnections, r.MitigationDrops} {
		if p != nil {
			dropped, any = dropped+*p, true
		}
	}
	if !any {
		return nil
	}
	return f64(dropped)
}

// smoothRate feeds a cumulative counter into its history and returns its
// rate over RateWindow. A reset (or a gap: no interval rate although there
// is a reading) clears the history so no rate spans it.
func (r *deriver) smoothRate(h *gaugeHist, cur *uint64, dl delta, s *sample.Sample, source string) *float64 {
	if cur == nil {
		return nil
	}
	if _, carried := carriedAt(s, source); !carried || h.n == 0 {
		// A carried reading is already in h (or, at the start of a
		// recording, taken as new).
		if !dl.ok {
			h.clear()
		}
		h.add(s.Time, float64(*cur))
	}
	if rt, ok := h.slope(r.cfg.RateWindow, r.cfg.MaxGap); ok && rt >= 0 {
		return f64(rt)
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

func f64(v float64) *float64 { return &v }
