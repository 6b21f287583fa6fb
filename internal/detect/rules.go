package detect

import "time"

// input is everything a rule may read about one sample: the derived view,
// the raw interval deltas, this port's own evidence and the new-connection
// thresholds from the baselines. Rules never change it.
type input struct {
	cfg   *Config
	state State // before this sample
	v     *View
	d     *derived
	port  portEvidence
	conns newConnLevels
	// listenDrops sums the kernel's listen-queue drops this interval
	// (ListenDrops, else ListenOverflows + ReqQFullDrop); listenOK says
	// whether any of them could be read.
	listenDrops uint64
	listenOK    bool
}

// portEvidence is this listener's own pressure (Principle 0): what lets a
// namespace-wide counter be blamed on this port.
type portEvidence struct {
	known       bool // accept-queue data available
	peak, limit uint64
	acceptHigh  bool // peak ≥ AcceptHighOccupancy of the limit (and ≥ AcceptMinDepth)
	acceptFull  bool // peak at the limit
	synThr      uint64
	synHigh     bool
	pressure    bool // acceptHigh or synHigh
}

// newConnLevels are the smoothed new-connection rates with their
// thresholds and baselines: namespace-wide (PassiveOpens) and this
// instance's (total_connections_received).
type newConnLevels struct {
	pRate, vRate *float64
	pThr, vThr   float64
	pBase, vBase *float64
}

// evaluation is what one sample says.
type evaluation struct {
	signals   []Signal
	storm     bool
	surge     bool
	relearned bool
	// sighted is false when no drop or refusal signal could be read this
	// sample: silence then is blindness, not quiet.
	sighted bool
}

func (e *evaluation) add(s Signal) {
	e.signals = append(e.signals, s)
	if s.Level == LevelStorm {
		e.storm = true
	} else {
		e.surge = true
	}
}

// rule adds the signals of one kind for one sample. Rules that need memory
// across samples keep it in ruleMemory.
type rule func(mem *ruleMemory, in *input, out *evaluation)

// rules run in this order; it is also the order of the signals in events
// (storm signals first, then early warnings). A new signal is one function
// here and, if it reads a new counter, one entry in counterTable.
var rules = [...]rule{
	ruleNamespaceDrops,
	ruleAcceptFull,
	ruleConntrackDrop,
	ruleInsertFailed,
	ruleNICConntrack,
	ruleNICPPS,
	ruleRejections,
	ruleNewConnRate,
	ruleAcceptHigh,
	ruleSynRecv,
	ruleConntrackEarlyDrop,
	ruleForecastConntrack,
	ruleForecastAccept,
	ruleForecastMaxclients,
	rulePingSlow,
}

// ruleMemory is the per-target state of the rules across samples.
type ruleMemory struct {
	pingHigh      int       // consecutive samples with PING above its threshold
	rateOnlySince time.Time // start of a surge held by the new-connection rate alone
}

// evaluate runs every rule over one sample, then the relearning check.
func (m *ruleMemory) evaluate(in *input) evaluation {
	var e evaluation
	e.sighted = in.port.known
	for i, c := range counterTable {
		e.sighted = e.sighted || c.refusal && in.d.deltas[i].ok
	}
	for _, r := range rules {
		r(m, in, &e)
	}
	m.checkRelearn(in, &e)
	return e
}

// newInput gathers what the rules read.
func newInput(cfg *Config, state State, v *View, d *derived, conns newConnLevels) *input {
	in := &input{cfg: cfg, state: state, v: v, d: d, conns: conns}
	p := &in.port
	if v.AcceptOccupancy != nil {
		p.known = true
		p.limit = *v.AcceptLimit
		if v.AcceptDepthMax != nil {
			p.peak = *v.AcceptDepthMax
		} else {
			p.peak = *v.AcceptDepth
		}
		p.acceptHigh = *v.AcceptOccupancy >= cfg.AcceptHighOccupancy && p.peak >= cfg.AcceptMinDepth
		p.acceptFull = p.peak >= p.limit
	}
	p.synThr = cfg.SynRecvMin
	if v.AcceptLimit != nil && *v.AcceptLimit > 0 && *v.AcceptLimit/2 < p.synThr {
		p.synThr = max(*v.AcceptLimit/2, cfg.AcceptMinDepth)
	}
	p.synHigh = v.SynRecv != nil && *v.SynRecv >= p.synThr
	p.pressure = p.acceptHigh || p.synHigh

	dl := &d.deltas
	if dl[cDrops].ok {
		in.listenDrops, in.listenOK = dl[cDrops].n, true
	} else {
		for _, i := range []counterID{cOverflows, cReqQDrop} {
			if dl[i].ok {
				in.listenDrops += dl[i].n
				in.listenOK = true
			}
		}
	}
	return in
}

// perSecond turns an interval count into a rate (the count itself when
// the interval is unknown).
func (in *input) perSecond(n uint64) float64 {
	if in.v.IntervalS <= 0 {
		return float64(n)
	}
	return float64(n) / in.v.IntervalS
}

// minDrops is the per-interval count a drop counter needs to be a signal.
func (in *input) minDrops() uint64 { return in.cfg.StormMinDrops }

// --- Storm: connections dropped or refused now. ---

// ruleNamespaceDrops: kernel listen-queue drops and SYN cookies are
// namespace-wide counters; they make a storm on this port only with this
// port's own pressure or no per-port data to contradict them, else an
// early warning that another listener is drowning (Principle 0).
func ruleNamespaceDrops(_ *ruleMemory, in *input, e *evaluation) {
	cookies := in.d.deltas[cReqQCookies]
	nsDrops := in.listenOK && in.listenDrops >= in.minDrops()
	nsCookies := cookies.ok && cookies.n >= in.minDrops()
	if !nsDrops && !nsCookies {
		return
	}
	p := &in.port
	level, where := LevelStorm, whereElsewhere
	switch {
	case !p.known && !p.synHigh:
		where = whereNoPortData
	case p.pressure && p.acceptFull:
		where = whereQueueFull
	case p.pressure && p.acceptHigh:
		where = whereQueueHigh
	case p.pressure:
		where = whereSynRecv
	default:
		level = LevelSurge
	}
	if nsDrops {
		name := "listen_drops"
		if level == LevelSurge {
			name = "namespace_listen_drops"
		}
		e.add(Signal{Name: name, Level: level, Scope: ScopeNamespace, Value: in.perSecond(in.listenDrops), Threshold: float64(in.minDrops()), Unit: "conn/s",
			PerPortEvidence: p.pressure, detail: where})
	}
	if nsCookies {
		name := "syn_queue_full"
		if level == LevelSurge {
			name = "namespace_syn_queue_full"
		}
		e.add(Signal{Name: name, Level: level, Scope: ScopeNamespace, Value: in.perSecond(cookies.n), Threshold: float64(in.minDrops()), Unit: "cookies/s",
			PerPortEvidence: p.pressure, detail: where})
	}
}

// ruleAcceptFull: this port's accept queue at its limit drops the next SYN
// or final ACK. With drop counters available and silent it is a warning;
// without them it is the only evidence of drops we have.
func ruleAcceptFull(_ *ruleMemory, in *input, e *evaluation) {
	p := &in.port
	if !p.acceptFull {
		return
	}
	nsDrops := in.listenOK && in.listenDrops >= in.minDrops()
	level, detail := LevelSurge, detailNone
	if nsDrops || !in.listenOK {
		level = LevelStorm
	}
	if !in.listenOK {
		detail = detailNoCounters
	}
	e.add(Signal{Name: "accept_queue_full", Level: level, Scope: ScopePort, Value: float64(p.peak), Threshold: float64(p.limit), Unit: "connections",
		PerPortEvidence: true, detail: detail})
}

// dropRule is a storm signal from one drop counter at ≥ StormMinDrops per
// interval.
func dropRule(in *input, e *evaluation, id counterID, name string, scope Scope, unit string, perPort bool) {
	if c := in.d.deltas[id]; c.ok && c.n >= in.minDrops() {
		e.add(Signal{Name: name, Level: LevelStorm, Scope: scope, Value: in.perSecond(c.n), Threshold: float64(in.minDrops()), Unit: unit, PerPortEvidence: perPort})
	}
}

// ruleConntrackDrop: the table is full and SYNs die before TCP sees them;
// the table is shared, so this port's new connections too.
func ruleConntrackDrop(_ *ruleMemory, in *input, e *evaluation) {
	dropRule(in, e, cCtDrop, "conntrack_drop", ScopeNamespace, "packets/s", false)
}

// ruleInsertFailed: insert_failed also counts benign races, so it needs a
// rate, not just one.
func ruleInsertFailed(_ *ruleMemory, in *input, e *evaluation) {
	if c := in.d.deltas[cCtInsertFailed]; c.ok && c.n >= in.minDrops() && c.rate >= in.cfg.InsertFailedMinRate {
		e.add(Signal{Name: "conntrack_insert_failed", Level: LevelStorm, Scope: ScopeNamespace, Value: c.rate, Threshold: in.cfg.InsertFailedMinRate, Unit: "packets/s"})
	}
}

func ruleNICConntrack(_ *ruleMemory, in *input, e *evaluation) {
	dropRule(in, e, cNICConntrack, "nic_conntrack_allowance_exceeded", ScopeNIC, "packets/s", false)
}

func ruleNICPPS(_ *ruleMemory, in *input, e *evaluation) {
	dropRule(in, e, cNICPPS, "nic_pps_allowance_exceeded", ScopeNIC, "packets/s", false)
}

// ruleRejections: Valkey refused connections at maxclients.
func ruleRejections(_ *ruleMemory, in *input, e *evaluation) {
	dropRule(in, e, cRejected, "maxclients_rejections", ScopeInstance, "conn/s", true)
}

// --- Surge: early warning. ---

// ruleNewConnRate checks the new-connection rate against its baseline. The
// per-instance Valkey rate wins when it fires; the namespace-wide
// PassiveOpens rate fires alone only when nothing per-port contradicts it.
func ruleNewConnRate(_ *ruleMemory, in *input, e *evaluation) {
	c := &in.conns
	vHigh := c.vRate != nil && *c.vRate > c.vThr
	pHigh := c.pRate != nil && *c.pRate > c.pThr
	switch {
	case vHigh:
		e.add(Signal{Name: "new_conn_rate", Level: LevelSurge, Scope: ScopeInstance, Value: *c.vRate, Threshold: c.vThr, Unit: "conn/s",
			PerPortEvidence: true, base: c.vBase, detail: whereInstance})
	case pHigh && (c.vRate == nil || in.port.pressure):
		// Valkey's own accept counter is either missing or lagging
		// because the accept queue is backing up: trust the kernel.
		detail := whereNoInstanceCounter
		if c.vRate != nil {
			detail = whereBackingUp
		}
		e.add(Signal{Name: "new_conn_rate", Level: LevelSurge, Scope: ScopeNamespace, Value: *c.pRate, Threshold: c.pThr, Unit: "conn/s",
			PerPortEvidence: in.port.pressure, base: c.pBase, detail: detail})
	}
}

func ruleAcceptHigh(_ *ruleMemory, in *input, e *evaluation) {
	if p := &in.port; p.acceptHigh && !p.acceptFull {
		e.add(Signal{Name: "accept_queue_high", Level: LevelSurge, Scope: ScopePort, Value: *in.v.AcceptOccupancy, Threshold: in.cfg.AcceptHighOccupancy, Unit: "ratio",
			PerPortEvidence: true})
	}
}

func ruleSynRecv(_ *ruleMemory, in *input, e *evaluation) {
	if p := &in.port; p.synHigh {
		e.add(Signal{Name: "syn_recv_high", Level: LevelSurge, Scope: ScopePort, Value: float64(*in.v.SynRecv), Threshold: float64(p.synThr), Unit: "connections",
			PerPortEvidence: true})
	}
}

// ruleConntrackEarlyDrop: the table is full and evicting unreplied entries.
func ruleConntrackEarlyDrop(_ *ruleMemory, in *input, e *evaluation) {
	if c := in.d.deltas[cCtEarlyDrop]; c.ok && c.n >= in.minDrops() {
		e.add(Signal{Name: "conntrack_early_drop", Level: LevelSurge, Scope: ScopeNamespace, Value: in.perSecond(c.n), Threshold: float64(in.minDrops()), Unit: "entries/s"})
	}
}

// forecastRule: a resource at least ForecastMinOccupancy full that runs
// out within ForecastHorizon at its growth rate. Already full is left to
// the drop and rejection rules.
func forecastRule(in *input, e *evaluation, name string, secs, occ *float64, scope Scope) {
	horizon := in.cfg.ForecastHorizon.Seconds()
	if secs == nil || occ == nil || *occ < in.cfg.ForecastMinOccupancy || *secs >= horizon || *occ >= 1 {
		return
	}
	e.add(Signal{Name: name, Level: LevelSurge, Scope: scope, Value: *secs, Threshold: horizon, Unit: "s",
		PerPortEvidence: scope == ScopePort || scope == ScopeInstance})
}

func ruleForecastConntrack(_ *ruleMemory, in *input, e *evaluation) {
	forecastRule(in, e, "forecast_conntrack_full", in.v.Forecasts.ConntrackFullS, in.v.ConntrackOccupancy, ScopeNamespace)
}

func ruleForecastAccept(_ *ruleMemory, in *input, e *evaluation) {
	forecastRule(in, e, "forecast_accept_queue_full", in.v.Forecasts.AcceptFullS, in.v.AcceptOccupancy, ScopePort)
}

func ruleForecastMaxclients(_ *ruleMemory, in *input, e *evaluation) {
	forecastRule(in, e, "forecast_maxclients", in.v.Forecasts.MaxclientsFullS, in.v.ClientsOccupancy, ScopeInstance)
}

// rulePingSlow: PING over the reserved connection slow for PingSustain
// samples in a row (one slow command is not a trend).
func rulePingSlow(m *ruleMemory, in *input, e *evaluation) {
	p := in.v.PingMS
	if p == nil {
		return
	}
	thr := in.cfg.PingFloorMS
	if b := in.v.PingBaselineMS; b != nil {
		thr = max(thr, in.cfg.PingFactor**b)
	}
	if *p > thr {
		m.pingHigh++
	} else {
		m.pingHigh = 0
	}
	if m.pingHigh >= in.cfg.PingSustain {
		e.add(Signal{Name: "ping_slow", Level: LevelSurge, Scope: ScopeInstance, Value: *p, Threshold: thr, Unit: "ms", PerPortEvidence: true})
	}
}

// checkRelearn accepts a new steady level of new connections as normal
// when it alone has held the target in surge for RelearnAfter: a bigger
// fleet, a new service. Drops, queues, forecasts and latency are never
// relearned. The caller resets the baselines when e.relearned is set.
func (m *ruleMemory) checkRelearn(in *input, e *evaluation) {
	now := in.v.Time
	rateOnly := in.state == Surge && !e.storm && len(e.signals) == 1 && e.signals[0].Name == "new_conn_rate"
	if !rateOnly {
		m.rateOnlySince = time.Time{}
		return
	}
	if m.rateOnlySince.IsZero() || m.rateOnlySince.After(now) {
		m.rateOnlySince = now
		return
	}
	if now.Sub(m.rateOnlySince) < in.cfg.RelearnAfter {
		return
	}
	m.rateOnlySince = time.Time{}
	e.signals, e.surge, e.relearned = nil, false, true
}
