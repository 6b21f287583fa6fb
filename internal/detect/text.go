package detect

import "fmt"

// detail is what a rule saw that Value and Threshold do not say, kept so
// the sentence can be rendered after evaluation.
type detail uint8

const (
	detailNone detail = iota
	// Namespace-wide drop counters (Principle 0): how this port relates.
	whereNoPortData   // no per-port queue data to confirm it
	whereQueueFull    // this port's accept queue is full
	whereQueueHigh    // this port's accept queue peaked high
	whereSynRecv      // this port has many half-open connections
	whereSoleListener // this server is the namespace's only listener
	// the queue was high as the interval began (the poller missed the peak)
	whereQueueHighAtStart
	// SYN-queue drops with no fresh SYN_RECV count to confirm or contradict them.
	whereSynStageUnconfirmed
	// accept_queue_full without drop counters.
	detailNoCounters
	// new_conn_rate: which counter.
	whereInstance          // Valkey's own accept counter
	whereNoInstanceCounter // PassiveOpens, Valkey's counter unavailable
	whereBackingUp         // PassiveOpens, this port's queue backing up
	// What puts capacity at risk, for new_conn_rate.
	riskQueue          // accept queue high for TrendWindow
	riskQueueTrend     // accept queue growing steadily
	riskQueueRate      // accept queue filling while the rate is high
	riskSynRecv        // SYN_RECV high for TrendWindow
	riskClients        // connected clients near maxclients
	riskConntrack      // conntrack table nearly full
	riskNamespaceDrops // drops elsewhere in the namespace
	riskPing           // PING slow: the server is stalling
)

// renderTexts fills every signal's Text from its values and the view.
func renderTexts(sigs []Signal, v *View) {
	for i := range sigs {
		sigs[i].Text = signalText(&sigs[i], v)
	}
}

// signalText is the short phrase for one signal.
func signalText(s *Signal, v *View) string {
	switch s.Name {
	case "listen_drops":
		return fmt.Sprintf("%s connections/s dropped at the listen queue (%s)", fmtN(s.Value), whereText(s, v))
	case "syn_cookies":
		return fmt.Sprintf("SYN queue full, %s SYN cookies/s sent, nothing dropped by them (%s)", fmtN(s.Value), whereText(s, v))
	case "mitigation_drops":
		return fmt.Sprintf("stormguard's mitigation on this port dropping %s packets/s (connections refused, the storm is held back)", fmtN(s.Value))
	case "short_lived_connections":
		if s.detail == whereNoInstanceCounter {
			return fmt.Sprintf("%s new connections/s closing again at once (namespace-wide accepts while this port's established connections do not grow; Valkey's own counters unreadable), vs %s normal", fmtN(s.Value), baseText(s.base))
		}
		return fmt.Sprintf("%s new connections/s closing again at once (accepted, then abandoned: timed-out handshakes or clients that gave up), vs %s normal", fmtN(s.Value), baseText(s.base))
	case "abandoned_connections":
		if s.detail == whereInstance {
			return fmt.Sprintf("%s connections/s accepted but never set up (handshakes given up before they finished)", fmtN(s.Value))
		}
		return fmt.Sprintf("%s connections in the accept queue already closed by their clients (abandoned while waiting)", fmtN(s.Value))
	case "accept_queue_full":
		t := "accept queue full (" + queueText(v) + ")"
		if s.detail == detailNoCounters {
			t += ", drop counters unavailable"
		}
		return t
	case "conntrack_drop":
		return fmt.Sprintf("conntrack table full%s: %s new connections/s dropped before TCP (namespace-wide table: this port's new connections too)", ratioText(v.ConntrackCount, v.ConntrackMax), fmtN(s.Value))
	case "conntrack_insert_failed":
		return fmt.Sprintf("conntrack insert_failed %s/s (namespace-wide)", fmtN(s.Value))
	case "nic_conntrack_allowance_exceeded":
		return fmt.Sprintf("NIC conntrack allowance exceeded: %s packets/s dropped by the cloud network (whole host)", fmtN(s.Value))
	case "nic_pps_allowance_exceeded":
		return fmt.Sprintf("NIC packets-per-second allowance exceeded: %s packets/s queued or dropped (whole host)", fmtN(s.Value))
	case "maxclients_rejections":
		return fmt.Sprintf("Valkey refusing %s connections/s%s", fmtN(s.Value), clientsText(v))
	case "new_conn_rate":
		where := "this instance"
		switch s.detail {
		case whereNoInstanceCounter:
			where = "namespace-wide; no per-instance counter"
		case whereBackingUp:
			where = "namespace-wide; this port's queue is backing up"
		}
		return "new connections " + rateVsBase(s.Value, s.base) + " (" + where + ")" + riskText(s.risk, v)
	case "accept_queue_high":
		return "accept queue peaked at " + queueText(v)
	case "syn_recv_high":
		return fmt.Sprintf("%s half-open connections (SYN_RECV) on this port", fmtN(s.Value))
	case "conntrack_early_drop":
		return fmt.Sprintf("conntrack table full%s, evicting %s entries/s (namespace-wide)", ratioText(v.ConntrackCount, v.ConntrackMax), fmtN(s.Value))
	case "forecast_conntrack_full":
		return forecastText("conntrack table (namespace-wide)", s.Value, v.ConntrackCount, v.ConntrackMax)
	case "forecast_accept_queue_full":
		return forecastText("accept queue", s.Value, v.AcceptDepthMax, v.AcceptLimit)
	case "forecast_maxclients":
		return forecastText("maxclients", s.Value, v.ConnectedClients, v.MaxClients)
	case "ping_slow":
		base := ""
		if v.PingBaselineMS != nil {
			base = fmt.Sprintf(" vs %s ms normal", fmtMS(*v.PingBaselineMS))
		}
		return fmt.Sprintf("PING %s ms%s (clients time out and redial)", fmtMS(s.Value), base)
	case "accept_wait_rising":
		base := ""
		if v.AcceptWaitBaselineMS != nil {
			base = fmt.Sprintf(" vs %s ms normal", fmtMS(*v.AcceptWaitBaselineMS))
		}
		return fmt.Sprintf("connections wait %s ms (p99) in the accept queue before Valkey accepts them%s, and rising", fmtMS(s.Value), base)
	}
	return fmt.Sprintf("%s %s %s (threshold %s)", s.Name, fmtN(s.Value), s.Unit, fmtN(s.Threshold))
}

// whereText says how a namespace-wide counter relates to this port.
func whereText(s *Signal, v *View) string {
	d := s.detail
	switch d {
	case whereNoPortData:
		return "namespace-wide counter; no per-port queue data to confirm it is this port"
	case whereQueueFull:
		return "namespace-wide counter; this port's accept queue is full (" + queueText(v) + ")"
	case whereQueueHigh:
		return "namespace-wide counter; this port's accept queue peaked at " + queueText(v)
	case whereSynStageUnconfirmed:
		return "namespace-wide counter; drops at the SYN queue, which this port's accept queue cannot show, and no fresh SYN_RECV count to confirm it is this port"
	case whereSoleListener:
		return "namespace-wide counter; this server is the only listener in its namespace"
	case whereQueueHighAtStart:
		return "namespace-wide counter; this port's accept queue held " + startQueueText(s.startDepth, v) + " as the interval began"
	case whereSynRecv:
		n := 0.0
		if v.SynRecv != nil {
			n = float64(*v.SynRecv)
		}
		return fmt.Sprintf("namespace-wide counter; this port has %s connections in SYN_RECV", fmtN(n))
	}
	return "namespace-wide counter"
}

// startQueueText is the queue depth the interval began with over its limit.
func startQueueText(depth uint64, v *View) string {
	if v.AcceptLimit == nil {
		return fmt.Sprint(depth)
	}
	return fmt.Sprintf("%d/%d", depth, *v.AcceptLimit)
}

// riskText says why a high rate is worth a warning.
func riskText(r detail, v *View) string {
	switch r {
	case riskQueue:
		return ", accept queue staying high (" + queueText(v) + ")"
	case riskQueueTrend:
		return ", accept queue growing (" + queueText(v) + ")"
	case riskQueueRate:
		return ", accept queue filling (" + queueText(v) + ")"
	case riskSynRecv:
		return ", many half-open connections"
	case riskClients:
		return ", clients near maxclients" + ratioText(v.ConnectedClients, v.MaxClients)
	case riskConntrack:
		return ", conntrack table nearly full" + ratioText(v.ConntrackCount, v.ConntrackMax)
	case riskNamespaceDrops:
		return ", connections dropped elsewhere in the namespace"
	case riskPing:
		return ", server slow to answer PING"
	}
	return ""
}

func baseText(base *float64) string {
	if base == nil {
		return "no baseline yet"
	}
	return fmtN(*base) + "/s"
}

// queueText renders this port's accept-queue peak "40/64" ("" unknown).
func queueText(v *View) string {
	peak := v.AcceptDepthMax
	if peak == nil {
		peak = v.AcceptDepth
	}
	if peak == nil || v.AcceptLimit == nil {
		return ""
	}
	return fmt.Sprintf("%s/%s", fmtN(float64(*peak)), fmtN(float64(*v.AcceptLimit)))
}

func forecastText(what string, secs float64, cur, max *uint64) string {
	return fmt.Sprintf("%s full in %s s at the current growth%s", what, fmtN(secs), ratioText(cur, max))
}
