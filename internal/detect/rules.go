package detect

import (
	"fmt"
	"math"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

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
	// nsDrops: listen drops counted this interval; nsElsewhere: ... but
	// this port shows no pressure and is not the namespace's only
	// listener, so they are another listener's (context, never a signal).
	nsDrops, nsElsewhere bool
	// sole: this server is the only listener in its namespace, so the
	// namespace-wide listen counters are this port's.
	sole bool
	// abandoned: connections waiting in this port's accept queue that
	// their clients already closed (fresh counts only; nil: unknown).
	// pendingRate: connections per second Valkey accepted that did not
	// finish their setup within the interval (handshake_pending; nil:
	// unknown).
	abandoned   *uint64
	pendingRate *float64
	// synStageUnconfirmed: some of the drops happened at the SYN queue
	// (ListenDrops beyond ListenOverflows) and no fresh SYN_RECV count
	// can say whether they were this port's.
	synStageUnconfirmed bool

	// What the rules' memory says about the recent past (see track).
	queueHeld, synHeld bool    // accept queue / SYN_RECV high for TrendWindow
	acceptTrend        bool    // accept queue growing for the trend window, ≥ ForecastMinOccupancy
	pingSlow           bool    // PING above its threshold for PingSustain samples
	pingThr            float64 // that threshold
	acceptWaitRising   bool    // p99 accept wait above its threshold, not falling, for AcceptWaitSustain samples
	acceptWaitThr      float64 // that threshold
	// risk names what puts capacity at risk (detailNone: nothing), so a
	// high new-connection rate is worth a warning.
	risk detail
}

// portEvidence is this listener's own pressure (Principle 0): what lets a
// namespace-wide counter be blamed on this port.
type portEvidence struct {
	known       bool // accept-queue data available
	peak, limit uint64
	acceptHigh  bool // peak ≥ AcceptHighOccupancy of the limit (and ≥ AcceptMinDepth)
	acceptFull  bool // peak at the limit
	// startHigh: the queue was at or above AcceptHighOccupancy (and
	// AcceptMinDepth) at the previous sample's instant, as this interval
	// began. A poller starved on a loaded host can miss the peak that
	// overflowed; the depth the interval started from is still a reading
	// of this interval's queue.
	startHigh  bool
	startDepth uint64
	synThr     uint64
	synHigh    bool
	pressure   bool // acceptHigh or synHigh
	// ownDrops: this port's own drop counter (listen.overflows_port,
	// eBPF) counted at least StormMinDrops since its previous reading.
	// It is exact where the queue polls are not (an overflow over
	// within one poll reads as an empty queue).
	ownDrops bool
}

// newConnLevels are the smoothed new-connection rates with their
// thresholds and baselines: namespace-wide (PassiveOpens) and this
// instance's (total_connections_received).
type newConnLevels struct {
	pRate, vRate *float64
	pThr, vThr   float64
	pBase, vBase *float64
}

// high reports whether each rate is above its threshold. Without a
// learned (or seeded) baseline a rate is never high: the first second
// after start says nothing about normal.
func (c *newConnLevels) high() (instance, namespace bool) {
	return c.vRate != nil && c.vBase != nil && *c.vRate > c.vThr, c.pRate != nil && c.pBase != nil && *c.pRate > c.pThr
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
	rulePortOverflows,
	ruleAcceptFull,
	ruleMitigationDrops,
	ruleConntrackDrop,
	ruleInsertFailed,
	ruleNICConntrack,
	ruleNICPPS,
	ruleRejections,
	ruleShortLived,
	ruleAbandoned,
	ruleNewConnRate,
	ruleSynCookies,
	ruleAcceptHigh,
	ruleSynRecv,
	ruleConntrackEarlyDrop,
	ruleForecastConntrack,
	ruleForecastAccept,
	ruleForecastMaxclients,
	rulePingSlow,
	ruleAcceptWait,
}

// ruleMemory is the per-target state of the rules across samples.
type ruleMemory struct {
	pingHigh      int       // consecutive samples with PING above its threshold
	waitHigh      int       // consecutive samples with the p99 accept wait above its threshold and not falling
	waitPrev      float64   // the previous of those samples' p99
	rateOnlySince time.Time // start of a surge held by the new-connection rate alone
	queueHigh     held      // accept queue at or above AcceptHighOccupancy
	synHigh       held      // SYN_RECV at or above its threshold
}

// held tracks since when a condition has held in consecutive samples.
type held struct {
	on    bool
	since time.Time
}

// update records this sample and returns how long the condition has held
// (-1 when it does not hold now).
func (h *held) update(now time.Time, cond bool) time.Duration {
	if !cond {
		h.on = false
		return -1
	}
	if !h.on || h.since.After(now) {
		h.on, h.since = true, now
	}
	return now.Sub(h.since)
}

// track updates the memory with this sample and writes what it says into
// in: sustained queue and SYN_RECV pressure, slow PING, and whether
// capacity is at risk.
func (m *ruleMemory) track(in *input) {
	cfg, v, p := in.cfg, in.v, &in.port
	now := v.Time
	in.queueHeld = m.queueHigh.update(now, p.acceptHigh || p.acceptFull && p.peak >= cfg.AcceptMinDepth) >= cfg.TrendWindow
	in.synHeld = m.synHigh.update(now, p.synHigh) >= cfg.TrendWindow
	in.acceptTrend = in.d.acceptRising && v.AcceptOccupancy != nil && *v.AcceptOccupancy >= cfg.ForecastMinOccupancy && p.peak >= cfg.AcceptMinDepth

	if pm := v.PingMS; pm != nil {
		in.pingThr = cfg.PingFloorMS
		if b := v.PingBaselineMS; b != nil {
			in.pingThr = max(in.pingThr, cfg.PingFactor**b)
		}
		if *pm > in.pingThr {
			m.pingHigh++
		} else {
			m.pingHigh = 0
		}
		in.pingSlow = m.pingHigh >= cfg.PingSustain
	}
	// A sample with no accept (nil) ends the run: a rising wait needs
	// Valkey to keep accepting, later and later.
	if w := v.AcceptWaitP99MS; w != nil {
		in.acceptWaitThr = cfg.AcceptWaitFloorMS
		if b := v.AcceptWaitBaselineMS; b != nil {
			in.acceptWaitThr = max(in.acceptWaitThr, cfg.AcceptWaitFactor**b)
		}
		switch {
		case *w <= in.acceptWaitThr:
			m.waitHigh = 0
		case m.waitHigh > 0 && *w < m.waitPrev:
			m.waitHigh = 1 // high, but falling: start again
		default:
			m.waitHigh++
		}
		m.waitPrev = *w
		in.acceptWaitRising = m.waitHigh >= cfg.AcceptWaitSustain
	} else {
		m.waitHigh = 0
	}

	vHigh, pHigh := in.conns.high()
	switch {
	case in.queueHeld:
		in.risk = riskQueue
	case (vHigh || pHigh) && v.AcceptOccupancy != nil && *v.AcceptOccupancy >= cfg.ForecastMinOccupancy && p.peak >= cfg.AcceptMinDepth:
		// Connections arriving well above normal for a whole RateWindow
		// while this port's queue already holds a quarter of its limit:
		// the queue will keep filling.
		in.risk = riskQueueRate
	case in.acceptTrend:
		in.risk = riskQueueTrend
	case in.synHeld:
		in.risk = riskSynRecv
	case v.ClientsOccupancy != nil && *v.ClientsOccupancy >= cfg.HeadroomOccupancy:
		in.risk = riskClients
	case v.ConntrackOccupancy != nil && *v.ConntrackOccupancy >= cfg.HeadroomOccupancy:
		in.risk = riskConntrack
	case in.nsElsewhere:
		in.risk = riskNamespaceDrops
	case in.pingSlow:
		in.risk = riskPing
	}
}

// evaluate runs every rule over one sample, then the relearning check.
func (m *ruleMemory) evaluate(in *input) evaluation {
	var e evaluation
	m.track(in)
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
func newInput(cfg *Config, state State, v *View, d *derived, conns newConnLevels, s *sample.Sample, synBase *float64) *input {
	in := &input{cfg: cfg, state: state, v: v, d: d, conns: conns}
	in.sole = s.NetNSOtherListeners != nil && *s.NetNSOtherListeners == 0
	fresh := s.CountsAgeMS == nil || *s.CountsAgeMS <= max(2000*v.IntervalS, 1000)
	if s.Listen != nil && s.Listen.Abandoned != nil && fresh {
		in.abandoned = s.Listen.Abandoned
	}
	if s.HandshakePending != nil && v.IntervalS > 0 {
		span := v.IntervalS
		if d.valkeySpan > 0 {
			span = d.valkeySpan.Seconds()
		}
		in.pendingRate = f64(float64(*s.HandshakePending) / span)
	}
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
		if sd := d.startDepth; sd != nil && p.limit > 0 {
			p.startDepth = *sd
			p.startHigh = float64(*sd)/float64(p.limit) >= cfg.AcceptHighOccupancy && *sd >= cfg.AcceptMinDepth
		}
	}
	p.synThr = cfg.SynRecvMin
	if v.AcceptLimit != nil && *v.AcceptLimit > 0 && *v.AcceptLimit/2 < p.synThr {
		p.synThr = max(*v.AcceptLimit/2, cfg.AcceptMinDepth)
	}
	if synBase != nil {
		// SYN_RECV is handshake rate × RTT: a slow link holds many
		// half-open connections all day. Growth is what counts.
		p.synThr = max(p.synThr, uint64(math.Ceil(cfg.NewConnFactor**synBase)))
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
	in.nsDrops = in.listenOK && in.listenDrops >= cfg.StormMinDrops
	p.ownDrops = dl[cPortOverflows].ok && dl[cPortOverflows].n >= cfg.StormMinDrops
	in.nsElsewhere = in.nsDrops && !in.sole && !p.pressure && !p.startHigh && !p.ownDrops && p.known
	if in.nsElsewhere {
		// Drops at the accept queue (overflows) are contradicted by this
		// port's queue peaking low; drops at the SYN queue (the rest of
		// ListenDrops: a SYN flood, syncookies off) never fill the accept
		// queue, so only a fresh SYN_RECV count can contradict them.
		var synStage uint64
		if dl[cDrops].ok && dl[cOverflows].ok && dl[cDrops].n > dl[cOverflows].n {
			synStage = dl[cDrops].n - dl[cOverflows].n
		} else if !dl[cDrops].ok && dl[cReqQDrop].ok {
			synStage = dl[cReqQDrop].n
		}
		fresh := v.SynRecv != nil && s.CountsAgeMS != nil && *s.CountsAgeMS <= max(2000*v.IntervalS, 1000)
		if synStage >= cfg.StormMinDrops && !fresh {
			in.nsElsewhere, in.synStageUnconfirmed = false, true
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

// deltaRate is a counter interval's rate over the time between its two
// readings, which is longer than the sample interval when the samples in
// between carried the source's earlier reading (sample.SourceAgeMS).
func (in *input) deltaRate(c delta) float64 {
	if c.span > 0 {
		return c.rate
	}
	return in.perSecond(c.n)
}

// minDrops is the per-interval count a drop counter needs to be a signal.
func (in *input) minDrops() uint64 { return in.cfg.StormMinDrops }

// --- Storm: connections dropped or refused now. ---

// ruleNamespaceDrops: kernel listen-queue drops are namespace-wide
// counters; they make a storm on this port when this server is the
// namespace's only listener, with this port's own pressure, or with no
// per-port data to contradict them (Principle 0). Drops while this port's
// queue is nearly empty are another listener's: no signal here, only a
// reason to take a high new-connection rate seriously.
func ruleNamespaceDrops(_ *ruleMemory, in *input, e *evaluation) {
	if !in.nsDrops || in.nsElsewhere {
		return
	}
	p := &in.port
	var where detail
	switch {
	case in.sole:
		where = whereSoleListener
	case p.ownDrops:
		where = whereOwnCounter
	case in.synStageUnconfirmed:
		where = whereSynStageUnconfirmed
	case !p.known && !p.synHigh:
		where = whereNoPortData
	case p.acceptFull:
		where = whereQueueFull
	case p.acceptHigh:
		where = whereQueueHigh
	case p.synHigh:
		where = whereSynRecv
	default:
		where = whereQueueHighAtStart
	}
	e.add(Signal{Name: "listen_drops", say: sayListenDrops, Level: LevelStorm, Scope: ScopeNamespace, Value: in.perSecond(in.listenDrops), Threshold: float64(in.minDrops()), Unit: "conn/s",
		PerPortEvidence: p.pressure || p.startHigh || in.sole || p.ownDrops, detail: where, startDepth: p.startDepth})
}

// rulePortOverflows: this port's listening sockets counted dropped
// connections themselves (their kernel drop counter, read by eBPF: SYNs
// and final ACKs the full accept queue could not take, SYNs the full SYN
// queue dropped). It is the per-port count of what listen_drops counts for
// the whole namespace, so no other listener can explain it, and it is
// exact where the queue polls are not: a reconnect wave that overflows the
// queue between two polls reads as an empty queue. However few, each is a
// client whose connection was lost and will be retried (a SYN retransmit
// a second later at best): a storm, the same threshold (StormMinDrops) as
// every other drop counter. It is read across a gap: the count after a
// listener was recreated (a Valkey restart; the new socket learned a
// sample or two later) is compared with the last reading before, so a
// restart whose reconnect wave overflows the new queue is seen.
func rulePortOverflows(_ *ruleMemory, in *input, e *evaluation) {
	dropRule(in, e, cPortOverflows, "port_overflows", sayPortOverflows, ScopePort, "conn/s", true)
}

// sayPortOverflows is the port_overflows signal's sentence.
func sayPortOverflows(s *Signal, v *View) string {
	polled := ""
	if q := queueText(v); q != "" {
		polled = "; accept queue polls peaked at " + q
	}
	return fmt.Sprintf("%s connections/s dropped by this port's listening socket (its own drop counter: a full accept or SYN queue%s)", fmtN(s.Value), polled)
}

// sayListenDrops is the listen_drops signal's sentence.
func sayListenDrops(s *Signal, v *View) string {
	return fmt.Sprintf("%s connections/s dropped at the listen queue (%s)", fmtN(s.Value), whereText(s, v))
}

// ruleSynCookies: SYN cookies answer SYNs the full SYN queue cannot hold;
// nothing is dropped, so it is an early warning, and only when this port
// shows pressure or is the namespace's only listener (the counter is
// namespace-wide).
func ruleSynCookies(_ *ruleMemory, in *input, e *evaluation) {
	c := in.d.deltas[cReqQCookies]
	if !c.ok || c.n < in.minDrops() || !(in.port.pressure || in.sole) {
		return
	}
	where := whereSoleListener
	switch {
	case in.port.acceptFull:
		where = whereQueueFull
	case in.port.acceptHigh:
		where = whereQueueHigh
	case in.port.synHigh:
		where = whereSynRecv
	}
	e.add(Signal{Name: "syn_cookies", say: saySynCookies, Level: LevelSurge, Scope: ScopeNamespace, Value: in.perSecond(c.n), Threshold: float64(in.minDrops()), Unit: "cookies/s",
		PerPortEvidence: true, detail: where})
}

// saySynCookies is the syn_cookies signal's sentence.
func saySynCookies(s *Signal, v *View) string {
	return fmt.Sprintf("SYN queue full, %s SYN cookies/s sent, nothing dropped by them (%s)", fmtN(s.Value), whereText(s, v))
}

// ruleMitigationDrops: SYNs dropped by a mitigation stormguard armed on
// this port are refused connections: the storm is held back, not over.
func ruleMitigationDrops(_ *ruleMemory, in *input, e *evaluation) {
	dropRule(in, e, cMitigationDrops, "mitigation_drops", sayMitigationDrops, ScopePort, "packets/s", true)
}

// sayMitigationDrops is the mitigation_drops signal's sentence.
func sayMitigationDrops(s *Signal, v *View) string {
	return fmt.Sprintf("stormguard's mitigation on this port dropping %s packets/s (connections refused, the storm is held back)", fmtN(s.Value))
}

// ruleShortLived keeps a storm going while new connections arrive above
// their threshold and most of them close again at once: accepted, then
// abandoned (a TLS handshake that timed out, a client that gave up while
// its connection waited in the queue). Valkey's total_connections_received
// races ahead of connected_clients. When Valkey's counters cannot be read
// (its own connection does not get through the storm either), the kernel's
// accepts (PassiveOpens) race ahead of this port's ESTABLISHED sockets
// instead. It never starts a storm: per-request connections do exactly
// this on a healthy server.
func ruleShortLived(_ *ruleMemory, in *input, e *evaluation) {
	if in.state != Storm && in.state != Recovering {
		return
	}
	c := &in.conns
	vHigh, pHigh := c.high()
	var rate float64
	var stayed, base *float64
	scope, where := ScopeInstance, whereInstance
	switch {
	case c.vRate != nil:
		if !vHigh || in.d.clientsGrowth == nil {
			return
		}
		rate, stayed, base = *c.vRate, in.d.clientsGrowth, c.vBase
	case pHigh && in.d.estabGrowth != nil:
		rate, stayed, base = *c.pRate, in.d.estabGrowth, c.pBase
		scope, where = ScopeNamespace, whereNoInstanceCounter
	default:
		return
	}
	closed := rate - max(*stayed, 0)
	if closed < in.cfg.ChurnFraction*rate {
		return
	}
	e.add(Signal{Name: "short_lived_connections", say: sayShortLivedConnections, Level: LevelStorm, Scope: scope, Value: closed, Threshold: in.cfg.ChurnFraction * rate, Unit: "conn/s",
		PerPortEvidence: true, base: base, detail: where})
}

// sayShortLivedConnections is the short_lived_connections signal's sentence.
func sayShortLivedConnections(s *Signal, v *View) string {
	if s.detail == whereNoInstanceCounter {
		return fmt.Sprintf("%s new connections/s closing again at once (namespace-wide accepts while this port's established connections do not grow; Valkey's own counters unreadable), vs %s normal", fmtN(s.Value), baseText(s.base))
	}
	return fmt.Sprintf("%s new connections/s closing again at once (accepted, then abandoned: timed-out handshakes or clients that gave up), vs %s normal", fmtN(s.Value), baseText(s.base))
}

// ruleAbandoned keeps a storm going while connections are given up before
// they become clients: waiting in this port's accept queue already closed
// by their clients (Valkey will accept them, and for TLS start a handshake,
// for nobody), or accepted by Valkey without finishing their setup within
// the interval (TLS handshakes timing out). Like short_lived_connections it
// never starts a storm: a healthy server has neither, but a slow one with
// patient clients may show a few.
func ruleAbandoned(_ *ruleMemory, in *input, e *evaluation) {
	if in.state != Storm && in.state != Recovering {
		return
	}
	if a := in.abandoned; a != nil && *a >= in.cfg.AcceptMinDepth {
		e.add(Signal{Name: "abandoned_connections", say: sayAbandonedConnections, Level: LevelStorm, Scope: ScopePort, Value: float64(*a), Threshold: float64(in.cfg.AcceptMinDepth), Unit: "connections",
			PerPortEvidence: true})
		return
	}
	if p := in.pendingRate; p != nil {
		thr := in.cfg.ChurnFraction * in.conns.vThr
		if *p >= thr && thr > 0 {
			e.add(Signal{Name: "abandoned_connections", say: sayAbandonedConnections, Level: LevelStorm, Scope: ScopeInstance, Value: *p, Threshold: thr, Unit: "conn/s",
				PerPortEvidence: true, detail: whereInstance})
		}
	}
}

// sayAbandonedConnections is the abandoned_connections signal's sentence.
func sayAbandonedConnections(s *Signal, v *View) string {
	if s.detail == whereInstance {
		return fmt.Sprintf("%s connections/s accepted but never set up (handshakes given up before they finished)", fmtN(s.Value))
	}
	return fmt.Sprintf("%s connections in the accept queue already closed by their clients (abandoned while waiting)", fmtN(s.Value))
}

// ruleAcceptFull: this port's accept queue at its limit drops the next SYN
// or final ACK. With drop counters available and silent it is a warning;
// without them it is the only evidence of drops we have.
func ruleAcceptFull(_ *ruleMemory, in *input, e *evaluation) {
	p := &in.port
	if !p.acceptFull {
		return
	}
	level, detail := LevelSurge, detailNone
	if in.nsDrops || !in.listenOK {
		level = LevelStorm
	} else if !in.queueHeld {
		return // full for one burst, nothing dropped: not yet a trend
	}
	if !in.listenOK {
		detail = detailNoCounters
	}
	e.add(Signal{Name: "accept_queue_full", say: sayAcceptQueueFull, Level: level, Scope: ScopePort, Value: float64(p.peak), Threshold: float64(p.limit), Unit: "connections",
		PerPortEvidence: true, detail: detail})
}

// sayAcceptQueueFull is the accept_queue_full signal's sentence.
func sayAcceptQueueFull(s *Signal, v *View) string {
	t := "accept queue full (" + queueText(v) + ")"
	if s.detail == detailNoCounters {
		t += ", drop counters unavailable"
	}
	return t
}

// dropRule is a storm signal from one drop counter at ≥ StormMinDrops per
// interval.
func dropRule(in *input, e *evaluation, id counterID, name string, say sayFunc, scope Scope, unit string, perPort bool) {
	if c := in.d.deltas[id]; c.ok && c.n >= in.minDrops() {
		e.add(Signal{Name: name, say: say, Level: LevelStorm, Scope: scope, Value: in.deltaRate(c), Threshold: float64(in.minDrops()), Unit: unit, PerPortEvidence: perPort})
	}
}

// ruleConntrackDrop: the table is full and SYNs die before TCP sees them;
// the table is shared, so this port's new connections too.
func ruleConntrackDrop(_ *ruleMemory, in *input, e *evaluation) {
	dropRule(in, e, cCtDrop, "conntrack_drop", sayConntrackDrop, ScopeNamespace, "packets/s", false)
}

// sayConntrackDrop is the conntrack_drop signal's sentence.
func sayConntrackDrop(s *Signal, v *View) string {
	return fmt.Sprintf("conntrack table full%s: %s new connections/s dropped before TCP (namespace-wide table: this port's new connections too)", ratioText(v.ConntrackCount, v.ConntrackMax), fmtN(s.Value))
}

// ruleInsertFailed: insert_failed also counts benign races, so it needs a
// rate, not just one.
func ruleInsertFailed(_ *ruleMemory, in *input, e *evaluation) {
	if c := in.d.deltas[cCtInsertFailed]; c.ok && c.n >= in.minDrops() && c.rate >= in.cfg.InsertFailedMinRate {
		e.add(Signal{Name: "conntrack_insert_failed", say: sayConntrackInsertFailed, Level: LevelStorm, Scope: ScopeNamespace, Value: c.rate, Threshold: in.cfg.InsertFailedMinRate, Unit: "packets/s"})
	}
}

// sayConntrackInsertFailed is the conntrack_insert_failed signal's sentence.
func sayConntrackInsertFailed(s *Signal, v *View) string {
	return fmt.Sprintf("conntrack insert_failed %s/s (namespace-wide)", fmtN(s.Value))
}

func ruleNICConntrack(_ *ruleMemory, in *input, e *evaluation) {
	dropRule(in, e, cNICConntrack, "nic_conntrack_allowance_exceeded", sayNicConntrackAllowanceExceeded, ScopeNIC, "packets/s", false)
}

// sayNicConntrackAllowanceExceeded is the nic_conntrack_allowance_exceeded signal's sentence.
func sayNicConntrackAllowanceExceeded(s *Signal, v *View) string {
	return fmt.Sprintf("NIC conntrack allowance exceeded: %s packets/s dropped by the cloud network (whole host)", fmtN(s.Value))
}

func ruleNICPPS(_ *ruleMemory, in *input, e *evaluation) {
	dropRule(in, e, cNICPPS, "nic_pps_allowance_exceeded", sayNicPpsAllowanceExceeded, ScopeNIC, "packets/s", false)
}

// sayNicPpsAllowanceExceeded is the nic_pps_allowance_exceeded signal's sentence.
func sayNicPpsAllowanceExceeded(s *Signal, v *View) string {
	return fmt.Sprintf("NIC packets-per-second allowance exceeded: %s packets/s queued or dropped (whole host)", fmtN(s.Value))
}

// ruleRejections: Valkey refused connections at maxclients.
func ruleRejections(_ *ruleMemory, in *input, e *evaluation) {
	dropRule(in, e, cRejected, "maxclients_rejections", sayMaxclientsRejections, ScopeInstance, "conn/s", true)
}

// sayMaxclientsRejections is the maxclients_rejections signal's sentence.
func sayMaxclientsRejections(s *Signal, v *View) string {
	return fmt.Sprintf("Valkey refusing %s connections/s%s", fmtN(s.Value), clientsText(v))
}

// --- Surge: early warning. ---

// ruleNewConnRate: a new-connection rate above max(NewConnFactor ×
// baseline, NewConnFloor) warns only when something says capacity is at
// risk (input.risk): sustained queue pressure or growth, SYN_RECV, client
// or conntrack headroom, drops elsewhere in the namespace, a stalled
// server, or a rate beyond anything this listener has been seen to accept,
// sustained. Valkey's own counter is preferred; the namespace-wide
// PassiveOpens rate counts only with this port's own queue evidence (a
// namespace-wide counter never raises a target alone).
func ruleNewConnRate(_ *ruleMemory, in *input, e *evaluation) {
	c := &in.conns
	if in.risk == detailNone {
		return
	}
	vHigh, pHigh := c.high()
	portRisk := in.queueHeld || in.acceptTrend || in.synHeld
	switch {
	case vHigh:
		e.add(Signal{Name: "new_conn_rate", say: sayNewConnRate, Level: LevelSurge, Scope: ScopeInstance, Value: *c.vRate, Threshold: c.vThr, Unit: "conn/s",
			PerPortEvidence: true, base: c.vBase, detail: whereInstance, risk: in.risk})
	case pHigh && portRisk:
		// Valkey's own accept counter is either missing or lagging
		// because the accept queue is backing up: trust the kernel.
		detail := whereNoInstanceCounter
		if c.vRate != nil {
			detail = whereBackingUp
		}
		e.add(Signal{Name: "new_conn_rate", say: sayNewConnRate, Level: LevelSurge, Scope: ScopeNamespace, Value: *c.pRate, Threshold: c.pThr, Unit: "conn/s",
			PerPortEvidence: true, base: c.pBase, detail: detail, risk: in.risk})
	}
}

// sayNewConnRate is the new_conn_rate signal's sentence.
func sayNewConnRate(s *Signal, v *View) string {
	where := "this instance"
	switch s.detail {
	case whereNoInstanceCounter:
		where = "namespace-wide; no per-instance counter"
	case whereBackingUp:
		where = "namespace-wide; this port's queue is backing up"
	}
	return "new connections " + rateVsBase(s.Value, s.base) + " (" + where + ")" + riskText(s.risk, v)
}

func ruleAcceptHigh(_ *ruleMemory, in *input, e *evaluation) {
	if p := &in.port; in.queueHeld && p.acceptHigh && !p.acceptFull {
		e.add(Signal{Name: "accept_queue_high", say: sayAcceptQueueHigh, Level: LevelSurge, Scope: ScopePort, Value: *in.v.AcceptOccupancy, Threshold: in.cfg.AcceptHighOccupancy, Unit: "ratio",
			PerPortEvidence: true})
	}
}

// sayAcceptQueueHigh is the accept_queue_high signal's sentence.
func sayAcceptQueueHigh(s *Signal, v *View) string {
	return "accept queue peaked at " + queueText(v)
}

func ruleSynRecv(_ *ruleMemory, in *input, e *evaluation) {
	if p := &in.port; in.synHeld {
		e.add(Signal{Name: "syn_recv_high", say: saySynRecvHigh, Level: LevelSurge, Scope: ScopePort, Value: float64(*in.v.SynRecv), Threshold: float64(p.synThr), Unit: "connections",
			PerPortEvidence: true})
	}
}

// saySynRecvHigh is the syn_recv_high signal's sentence.
func saySynRecvHigh(s *Signal, v *View) string {
	return fmt.Sprintf("%s half-open connections (SYN_RECV) on this port", fmtN(s.Value))
}

// ruleConntrackEarlyDrop: the table is full and evicting unreplied entries.
func ruleConntrackEarlyDrop(_ *ruleMemory, in *input, e *evaluation) {
	if c := in.d.deltas[cCtEarlyDrop]; c.ok && c.n >= in.minDrops() {
		e.add(Signal{Name: "conntrack_early_drop", say: sayConntrackEarlyDrop, Level: LevelSurge, Scope: ScopeNamespace, Value: in.deltaRate(c), Threshold: float64(in.minDrops()), Unit: "entries/s"})
	}
}

// sayConntrackEarlyDrop is the conntrack_early_drop signal's sentence.
func sayConntrackEarlyDrop(s *Signal, v *View) string {
	return fmt.Sprintf("conntrack table full%s, evicting %s entries/s (namespace-wide)", ratioText(v.ConntrackCount, v.ConntrackMax), fmtN(s.Value))
}

// forecastRule: a resource at least ForecastMinOccupancy full, growing in
// both halves of its window (a trend, not one spike), that runs out within
// ForecastHorizon at its growth rate. Already full is left to the drop and
// rejection rules.
func forecastRule(in *input, e *evaluation, name string, say sayFunc, rising bool, secs, occ *float64, scope Scope) {
	horizon := in.cfg.ForecastHorizon.Seconds()
	if !rising || secs == nil || occ == nil || *occ < in.cfg.ForecastMinOccupancy || *secs >= horizon || *occ >= 1 {
		return
	}
	e.add(Signal{Name: name, say: say, Level: LevelSurge, Scope: scope, Value: *secs, Threshold: horizon, Unit: "s",
		PerPortEvidence: scope == ScopePort || scope == ScopeInstance})
}

func ruleForecastConntrack(_ *ruleMemory, in *input, e *evaluation) {
	forecastRule(in, e, "forecast_conntrack_full", sayForecastConntrackFull, in.d.conntrackRising, in.v.Forecasts.ConntrackFullS, in.v.ConntrackOccupancy, ScopeNamespace)
}

// sayForecastConntrackFull is the forecast_conntrack_full signal's sentence.
func sayForecastConntrackFull(s *Signal, v *View) string {
	return forecastText("conntrack table (namespace-wide)", s.Value, v.ConntrackCount, v.ConntrackMax)
}

func ruleForecastAccept(_ *ruleMemory, in *input, e *evaluation) {
	forecastRule(in, e, "forecast_accept_queue_full", sayForecastAcceptQueueFull, in.d.acceptRising, in.v.Forecasts.AcceptFullS, in.v.AcceptOccupancy, ScopePort)
}

// sayForecastAcceptQueueFull is the forecast_accept_queue_full signal's sentence.
func sayForecastAcceptQueueFull(s *Signal, v *View) string {
	return forecastText("accept queue", s.Value, v.AcceptDepthMax, v.AcceptLimit)
}

func ruleForecastMaxclients(_ *ruleMemory, in *input, e *evaluation) {
	forecastRule(in, e, "forecast_maxclients", sayForecastMaxclients, in.d.clientsRising, in.v.Forecasts.MaxclientsFullS, in.v.ClientsOccupancy, ScopeInstance)
}

// sayForecastMaxclients is the forecast_maxclients signal's sentence.
func sayForecastMaxclients(s *Signal, v *View) string {
	return forecastText("maxclients", s.Value, v.ConnectedClients, v.MaxClients)
}

// rulePingSlow: PING over the reserved connection slow for PingSustain
// samples in a row while new connections arrive above their threshold: a
// stalled server with clients timing out and redialling. Slow PING alone
// (slow commands, a slow link) is not a connection storm.
func rulePingSlow(_ *ruleMemory, in *input, e *evaluation) {
	vHigh, pHigh := in.conns.high()
	if !in.pingSlow || !vHigh && !pHigh {
		return
	}
	e.add(Signal{Name: "ping_slow", say: sayPingSlow, Level: LevelSurge, Scope: ScopeInstance, Value: *in.v.PingMS, Threshold: in.pingThr, Unit: "ms", PerPortEvidence: true})
}

// sayPingSlow is the ping_slow signal's sentence.
func sayPingSlow(s *Signal, v *View) string {
	base := ""
	if v.PingBaselineMS != nil {
		base = fmt.Sprintf(" vs %s ms normal", fmtMS(*v.PingBaselineMS))
	}
	return fmt.Sprintf("PING %s ms%s (clients time out and redial)", fmtMS(s.Value), base)
}

// ruleAcceptWait: the p99 accept wait (eBPF) above max(AcceptWaitFactor ×
// baseline, AcceptWaitFloorMS) and not falling for AcceptWaitSustain
// samples, while new connections arrive above their threshold. Valkey is
// taking longer and longer to accept a connection that has already
// finished its handshake: the queue is building before it overflows.
// Like ping_slow, never on its own (a slow command stalls accepts too).
func ruleAcceptWait(_ *ruleMemory, in *input, e *evaluation) {
	vHigh, pHigh := in.conns.high()
	if !in.acceptWaitRising || !vHigh && !pHigh {
		return
	}
	e.add(Signal{Name: "accept_wait_rising", say: sayAcceptWaitRising, Level: LevelSurge, Scope: ScopeInstance, Value: *in.v.AcceptWaitP99MS, Threshold: in.acceptWaitThr, Unit: "ms", PerPortEvidence: true})
}

// sayAcceptWaitRising is the accept_wait_rising signal's sentence.
func sayAcceptWaitRising(s *Signal, v *View) string {
	base := ""
	if v.AcceptWaitBaselineMS != nil {
		base = fmt.Sprintf(" vs %s ms normal", fmtMS(*v.AcceptWaitBaselineMS))
	}
	return fmt.Sprintf("connections wait %s ms (p99) in the accept queue before Valkey accepts them%s, and rising", fmtMS(s.Value), base)
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
