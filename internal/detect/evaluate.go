package detect

import (
	"fmt"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

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

// evaluate turns the derived view into surge and storm signals. It reads
// the detector's counters and baselines but changes only the relearn and
// latency bookkeeping.
func evaluate(d *Detector, s *sample.Sample, v *View) evaluation {
	cfg := &d.cfg
	var e evaluation
	dl := &d.deltas
	minDrops := cfg.StormMinDrops

	// --- This port's own evidence (Principle 0). ---
	perPortKnown := v.AcceptOccupancy != nil
	var peak, limit uint64
	if perPortKnown {
		limit = *v.AcceptLimit
		if v.AcceptDepthMax != nil {
			peak = *v.AcceptDepthMax
		} else {
			peak = *v.AcceptDepth
		}
	}
	queueText := ""
	if perPortKnown {
		queueText = fmt.Sprintf("%s/%s", fmtN(float64(peak)), fmtN(float64(limit)))
	}
	acceptHigh := perPortKnown && *v.AcceptOccupancy >= cfg.AcceptHighOccupancy && peak >= cfg.AcceptMinDepth
	acceptFull := perPortKnown && peak >= limit
	synThr := cfg.SynRecvMin
	if v.AcceptLimit != nil && *v.AcceptLimit > 0 && *v.AcceptLimit/2 < synThr {
		synThr = max(*v.AcceptLimit/2, cfg.AcceptMinDepth)
	}
	synHigh := v.SynRecv != nil && *v.SynRecv >= synThr
	pressure := acceptHigh || synHigh

	// --- Storm: connections dropped or refused now. ---
	// Kernel listen-queue drops (namespace-wide counters).
	listenDrops, listenOK := uint64(0), false
	if dl[cDrops].ok {
		listenDrops, listenOK = dl[cDrops].n, true
	} else {
		for _, i := range []int{cOverflows, cReqQDrop} {
			if dl[i].ok {
				listenDrops += dl[i].n
				listenOK = true
			}
		}
	}
	e.sighted = perPortKnown
	for _, i := range []int{cOverflows, cDrops, cReqQDrop, cReqQCookies, cCtDrop, cNICConntrack, cNICPPS, cRejected} {
		e.sighted = e.sighted || dl[i].ok
	}
	rateOf := func(n uint64) float64 {
		if v.IntervalS <= 0 {
			return float64(n)
		}
		return float64(n) / v.IntervalS
	}
	cookies := dl[cReqQCookies]
	nsDrops := listenOK && listenDrops >= minDrops
	nsCookies := cookies.ok && cookies.n >= minDrops
	if nsDrops || nsCookies {
		level, perPort := LevelStorm, pressure
		var where string
		switch {
		case !perPortKnown && !synHigh:
			where = "namespace-wide counter; no per-port queue data to confirm it is this port"
		case pressure && acceptFull:
			where = "namespace-wide counter; this port's accept queue is full (" + queueText + ")"
		case pressure && acceptHigh:
			where = "namespace-wide counter; this port's accept queue peaked at " + queueText
		case pressure:
			where = fmt.Sprintf("namespace-wide counter; this port has %s connections in SYN_RECV", fmtN(float64(*v.SynRecv)))
		default:
			// Drops elsewhere in the namespace while this port's own
			// queue is nowhere near full: another listener is drowning.
			// Early warning only (shared conntrack, CPU, clients may
			// move here), never a storm blamed on this port.
			level = LevelSurge
			where = "namespace-wide counter, but this port's accept queue peaked at only " + queueText + ": probably another listener in the namespace"
		}
		if nsDrops {
			name := "listen_drops"
			if level == LevelSurge {
				name = "namespace_listen_drops"
			}
			e.add(Signal{Name: name, Level: level, Scope: ScopeNamespace, Value: rateOf(listenDrops), Threshold: float64(minDrops), Unit: "conn/s",
				PerPortEvidence: perPort, Text: fmt.Sprintf("%s connections/s dropped at the listen queue (%s)", fmtN(rateOf(listenDrops)), where)})
		}
		if nsCookies {
			name := "syn_queue_full"
			if level == LevelSurge {
				name = "namespace_syn_queue_full"
			}
			e.add(Signal{Name: name, Level: level, Scope: ScopeNamespace, Value: rateOf(cookies.n), Threshold: float64(minDrops), Unit: "cookies/s",
				PerPortEvidence: perPort, Text: fmt.Sprintf("SYN queue full, %s SYN cookies/s (%s)", fmtN(rateOf(cookies.n)), where)})
		}
	}
	// This port's accept queue at its limit: the next SYN or final ACK is
	// dropped. With drop counters available and silent, it is a warning;
	// without them it is the only evidence we have of drops.
	if acceptFull {
		level := LevelSurge
		text := "accept queue full (" + queueText + ")"
		if nsDrops || !listenOK {
			level = LevelStorm
		}
		if !listenOK {
			text += ", drop counters unavailable"
		}
		e.add(Signal{Name: "accept_queue_full", Level: level, Scope: ScopePort, Value: float64(peak), Threshold: float64(limit), Unit: "connections",
			PerPortEvidence: true, Text: text})
	}
	if c := dl[cCtDrop]; c.ok && c.n >= minDrops {
		e.add(Signal{Name: "conntrack_drop", Level: LevelStorm, Scope: ScopeNamespace, Value: rateOf(c.n), Threshold: float64(minDrops), Unit: "packets/s",
			Text: fmt.Sprintf("conntrack table full%s: %s new connections/s dropped before TCP (namespace-wide table: this port's new connections too)", ratioText(v.ConntrackCount, v.ConntrackMax), fmtN(rateOf(c.n)))})
	}
	if c := dl[cCtInsertFailed]; c.ok && c.n >= minDrops && c.rate >= cfg.InsertFailedMinRate {
		e.add(Signal{Name: "conntrack_insert_failed", Level: LevelStorm, Scope: ScopeNamespace, Value: c.rate, Threshold: cfg.InsertFailedMinRate, Unit: "packets/s",
			Text: fmt.Sprintf("conntrack insert_failed %s/s (namespace-wide)", fmtN(c.rate))})
	}
	if c := dl[cNICConntrack]; c.ok && c.n >= minDrops {
		e.add(Signal{Name: "nic_conntrack_allowance_exceeded", Level: LevelStorm, Scope: ScopeNIC, Value: rateOf(c.n), Threshold: float64(minDrops), Unit: "packets/s",
			Text: fmt.Sprintf("NIC conntrack allowance exceeded: %s packets/s dropped by the cloud network (whole host)", fmtN(rateOf(c.n)))})
	}
	if c := dl[cNICPPS]; c.ok && c.n >= minDrops {
		e.add(Signal{Name: "nic_pps_allowance_exceeded", Level: LevelStorm, Scope: ScopeNIC, Value: rateOf(c.n), Threshold: float64(minDrops), Unit: "packets/s",
			Text: fmt.Sprintf("NIC packets-per-second allowance exceeded: %s packets/s queued or dropped (whole host)", fmtN(rateOf(c.n)))})
	}
	if c := dl[cRejected]; c.ok && c.n >= minDrops {
		e.add(Signal{Name: "maxclients_rejections", Level: LevelStorm, Scope: ScopeInstance, Value: rateOf(c.n), Threshold: float64(minDrops), Unit: "conn/s",
			PerPortEvidence: true, Text: fmt.Sprintf("Valkey refusing %s connections/s%s", fmtN(rateOf(c.n)), clientsText(v))})
	}

	// --- Surge: early warning. ---
	newConnSignal(d, v, pressure, &e)
	if acceptHigh && !acceptFull {
		e.add(Signal{Name: "accept_queue_high", Level: LevelSurge, Scope: ScopePort, Value: *v.AcceptOccupancy, Threshold: cfg.AcceptHighOccupancy, Unit: "ratio",
			PerPortEvidence: true, Text: "accept queue peaked at " + queueText})
	}
	if synHigh {
		e.add(Signal{Name: "syn_recv_high", Level: LevelSurge, Scope: ScopePort, Value: float64(*v.SynRecv), Threshold: float64(synThr), Unit: "connections",
			PerPortEvidence: true, Text: fmt.Sprintf("%s half-open connections (SYN_RECV) on this port", fmtN(float64(*v.SynRecv)))})
	}
	if c := dl[cCtEarlyDrop]; c.ok && c.n >= minDrops {
		e.add(Signal{Name: "conntrack_early_drop", Level: LevelSurge, Scope: ScopeNamespace, Value: rateOf(c.n), Threshold: float64(minDrops), Unit: "entries/s",
			Text: fmt.Sprintf("conntrack table full%s, evicting %s entries/s (namespace-wide)", ratioText(v.ConntrackCount, v.ConntrackMax), fmtN(rateOf(c.n)))})
	}
	horizon := cfg.ForecastHorizon.Seconds()
	forecast := func(name, what string, secs, occ *float64, scope Scope, cur, max *uint64) {
		if secs == nil || occ == nil || *occ < cfg.ForecastMinOccupancy || *secs >= horizon {
			return
		}
		if *occ >= 1 {
			return // already full: the drop and rejection signals speak
		}
		e.add(Signal{Name: name, Level: LevelSurge, Scope: scope, Value: *secs, Threshold: horizon, Unit: "s",
			PerPortEvidence: scope == ScopePort || scope == ScopeInstance,
			Text:            fmt.Sprintf("%s full in %s s at the current growth%s", what, fmtN(*secs), ratioText(cur, max))})
	}
	forecast("forecast_conntrack_full", "conntrack table (namespace-wide)", v.Forecasts.ConntrackFullS, v.ConntrackOccupancy, ScopeNamespace, v.ConntrackCount, v.ConntrackMax)
	forecast("forecast_accept_queue_full", "accept queue", v.Forecasts.AcceptFullS, v.AcceptOccupancy, ScopePort, v.AcceptDepthMax, v.AcceptLimit)
	forecast("forecast_maxclients", "maxclients", v.Forecasts.MaxclientsFullS, v.ClientsOccupancy, ScopeInstance, v.ConnectedClients, v.MaxClients)

	if p := v.PingMS; p != nil {
		thr := cfg.PingFloorMS
		if v.PingBaselineMS != nil {
			thr = max(thr, cfg.PingFactor**v.PingBaselineMS)
		}
		if *p > thr {
			d.pingHigh++
		} else {
			d.pingHigh = 0
		}
		if d.pingHigh >= cfg.PingSustain {
			base := ""
			if v.PingBaselineMS != nil {
				base = fmt.Sprintf(" vs %s ms normal", fmtMS(*v.PingBaselineMS))
			}
			e.add(Signal{Name: "ping_slow", Level: LevelSurge, Scope: ScopeInstance, Value: *p, Threshold: thr, Unit: "ms",
				PerPortEvidence: true, Text: fmt.Sprintf("PING %s ms%s (clients time out and redial)", fmtMS(*p), base)})
		}
	}

	relearn(d, s.Time, v, &e)
	return e
}

// newConnSignal checks the new-connection rate against its baseline. The
// per-instance Valkey rate wins when it fires; the namespace-wide
// PassiveOpens rate fires alone only when nothing per-port contradicts it.
func newConnSignal(d *Detector, v *View, pressure bool, e *evaluation) {
	cfg := &d.cfg
	thr := func(b *baseline) (float64, *float64) {
		t := cfg.NewConnFloor
		if bv, ok := b.value(); ok {
			return max(t, cfg.NewConnFactor*bv), f64(bv)
		}
		return t, nil
	}
	pr, vr := d.smoothPassive, d.smoothValkey
	v.NewConnRateInstance = vr
	pThr, pBase := thr(d.passiveBase)
	vThr, vBase := thr(d.valkeyBase)
	switch {
	case pr != nil:
		v.NewConnRate, v.NewConnSource, v.NewConnScope = pr, counterNames[cPassive], ScopeNamespace
		v.NewConnBaseline, v.NewConnThreshold = pBase, f64(pThr)
	case vr != nil:
		v.NewConnRate, v.NewConnSource, v.NewConnScope = vr, counterNames[cValkeyConns], ScopeInstance
		v.NewConnBaseline, v.NewConnThreshold = vBase, f64(vThr)
	}
	vHigh := vr != nil && *vr > vThr
	pHigh := pr != nil && *pr > pThr
	switch {
	case vHigh:
		e.add(Signal{Name: "new_conn_rate", Level: LevelSurge, Scope: ScopeInstance, Value: *vr, Threshold: vThr, Unit: "conn/s",
			PerPortEvidence: true, Text: "new connections " + rateVsBase(*vr, vBase) + " (this instance)"})
	case pHigh && (vr == nil || pressure):
		// Valkey's own accept counter is either missing or lagging
		// because the accept queue is backing up: trust the kernel.
		where := "namespace-wide; no per-instance counter"
		if vr != nil {
			where = "namespace-wide; this port's queue is backing up"
		}
		e.add(Signal{Name: "new_conn_rate", Level: LevelSurge, Scope: ScopeNamespace, Value: *pr, Threshold: pThr, Unit: "conn/s",
			PerPortEvidence: pressure, Text: "new connections " + rateVsBase(*pr, pBase) + " (" + where + ")"})
	}
}

// relearn accepts a new steady level of new connections as normal when it
// alone has held the target in surge for RelearnAfter: a bigger fleet, a
// new service. Drops, queues, forecasts and latency are never relearned.
func relearn(d *Detector, now time.Time, v *View, e *evaluation) {
	rateOnly := d.state == Surge && !e.storm && len(e.signals) == 1 && e.signals[0].Name == "new_conn_rate"
	if !rateOnly {
		d.rateOnlySince = time.Time{}
		return
	}
	if d.rateOnlySince.IsZero() || d.rateOnlySince.After(now) {
		d.rateOnlySince = now
		return
	}
	if now.Sub(d.rateOnlySince) < d.cfg.RelearnAfter {
		return
	}
	if r := d.smoothPassive; r != nil {
		d.passiveBase.reset(*r)
	}
	if r := d.smoothValkey; r != nil {
		d.valkeyBase.reset(*r)
	}
	d.rateOnlySince = time.Time{}
	e.signals, e.surge, e.relearned = nil, false, true
}
