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
	// this port's own drop counter (eBPF) counted drops this interval
	whereOwnCounter
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

// sayFunc renders one signal's sentence from its values and the view; each
// rule passes its own (rules.go, next to the rule), so a new signal's words
// live with its rule.
type sayFunc func(s *Signal, v *View) string

// signalText is the short phrase for one signal: its rule's sentence, or a
// generic one.
func signalText(s *Signal, v *View) string {
	if s.say != nil {
		return s.say(s, v)
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
	case whereOwnCounter:
		return "namespace-wide counter; this port's own drop counter counted drops too"
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
