package detect

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Event is a state change, one JSON line of `watch --events`:
// {"time":RFC3339Nano,"type":"state","target":…,"from":…,"to":…,"reason":…,"evidence":{…}}
// plus "verdict" (one sentence for humans) and "state_code" (the metric value).
type Event struct {
	Time      time.Time `json:"time"`
	Type      string    `json:"type"`
	Target    string    `json:"target"`
	From      State     `json:"from"`
	To        State     `json:"to"`
	Reason    string    `json:"reason"`
	Verdict   string    `json:"verdict"`
	StateCode int       `json:"state_code"`
	Evidence  Evidence  `json:"evidence"`
}

// Evidence backs a state change with numbers.
type Evidence struct {
	// Signals active in the sample that caused the change (empty when the
	// change is the end of a quiet period).
	Signals []Signal `json:"signals"`
	// PerPort names the signals backed by this port's or this instance's
	// own numbers; NamespaceWide those that come from counters shared by
	// the whole network namespace or host NIC and were not confirmed on
	// this port (Principle 0).
	PerPort       []string `json:"per_port"`
	NamespaceWide []string `json:"namespace_wide"`
	// AttributedToPort is true when at least one signal has per-port or
	// per-instance evidence.
	AttributedToPort bool `json:"attributed_to_port"`
	// Episode summarises the storm so far (on transitions into, within and
	// out of storm/recovering).
	Episode *Episode `json:"episode,omitempty"`
	// View holds every derived number of the sample: rates, baselines,
	// occupancy, forecasts.
	View View `json:"view"`
	// Attribution names the sources of the new connections. The detector
	// never fills it (it does no I/O); the agent adds it from a socket
	// dump on transitions into surge and storm.
	Attribution *SourceAttribution `json:"attribution,omitempty"`
}

// newEvent renders the event for one state change: reason, verdict and
// evidence from the signals and the view of the sample that caused it.
func newEvent(target string, now time.Time, ch change, v *View, signals []Signal) Event {
	ep := ch.episode
	if ep == nil {
		ep = &Episode{}
	}
	ev := Event{
		Time:      now,
		Type:      "state",
		Target:    target,
		From:      ch.from,
		To:        ch.to,
		StateCode: ch.to.Code(),
		Reason:    reasonFor(signals, ch.to, ch.why),
		Verdict:   verdictFor(target, ch.from, ch.to, v, signals, ep, ch.why),
		Evidence:  newEvidence(signals),
	}
	ev.Evidence.Episode = ch.episode
	ev.Evidence.View = *v
	ev.Evidence.View.Signals = nil // already in Evidence.Signals
	return ev
}

func newEvidence(signals []Signal) Evidence {
	ev := Evidence{Signals: append([]Signal{}, signals...), PerPort: []string{}, NamespaceWide: []string{}}
	for _, s := range signals {
		if s.PerPortEvidence {
			ev.PerPort = appendOnce(ev.PerPort, s.Name)
			ev.AttributedToPort = true
		} else {
			ev.NamespaceWide = appendOnce(ev.NamespaceWide, s.Name)
		}
	}
	return ev
}

func appendOnce(l []string, s string) []string {
	for _, x := range l {
		if x == s {
			return l
		}
	}
	return append(l, s)
}

// Episode summarises one storm from its first storm sample to calm.
type Episode struct {
	Start time.Time `json:"start"`
	// End is the time of the event carrying this summary.
	End                 time.Time `json:"end"`
	PeakDroppedRate     float64   `json:"peak_dropped_rate"`
	PeakNewConnRate     float64   `json:"peak_new_conn_rate"`
	PeakAcceptOccupancy float64   `json:"peak_accept_occupancy"`
	// Dropped estimates connections dropped or refused so far (sum of
	// DroppedRate × interval).
	Dropped float64 `json:"dropped"`
	// LastStormSignal is the last sample with a storm signal.
	LastStormSignal time.Time `json:"last_storm_signal"`
	Relapses        int       `json:"relapses"`
	interval        float64
}

// dropDuration is how long drops went on: first to last storm sample plus
// the interval the first one closed.
func (ep *Episode) dropDuration() time.Duration {
	if ep.LastStormSignal.IsZero() {
		return 0
	}
	return ep.LastStormSignal.Sub(ep.Start) + time.Duration(ep.interval*float64(time.Second))
}

func (ep *Episode) observe(now time.Time, v *View, storm bool) {
	if storm {
		ep.LastStormSignal = now
	}
	if ep.interval == 0 {
		ep.interval = v.IntervalS
	}
	if r := v.DroppedRate; r != nil {
		ep.PeakDroppedRate = max(ep.PeakDroppedRate, *r)
		ep.Dropped += *r * v.IntervalS
	}
	if r := v.NewConnRate; r != nil {
		ep.PeakNewConnRate = max(ep.PeakNewConnRate, *r)
	}
	if o := v.AcceptOccupancy; o != nil {
		ep.PeakAcceptOccupancy = max(ep.PeakAcceptOccupancy, *o)
	}
}

// reasonFor is the short machine-friendly reason: the names of the signals
// that caused the change, or why a quiet period ended it.
func reasonFor(signals []Signal, to State, why string) string {
	if why != "" {
		return why
	}
	var names []string
	for _, s := range signals {
		if to == Storm && s.Level != LevelStorm {
			continue
		}
		names = appendOnce(names, s.Name)
	}
	if len(names) == 0 {
		return "signals cleared"
	}
	return strings.Join(names, ", ")
}

// verdictFor is the one sentence a tired human reads first.
func verdictFor(target string, from, to State, v *View, signals []Signal, ep *Episode, why string) string {
	has := map[string]Signal{}
	for _, s := range signals {
		has[s.Name] = s
	}
	var parts []string
	switch to {
	case Storm:
		if s, ok := has["accept_queue_full"]; ok {
			parts = append(parts, fmt.Sprintf("accept queue full (%s/%s)", fmtN(s.Value), fmtN(s.Threshold)))
		}
		if _, ok := has["maxclients_rejections"]; ok {
			// Clients can already be below the limit when the sample is
			// read (rejected clients give up fast), so say what was seen.
			p := "Valkey refusing connections at maxclients"
			if v.ConnectedClients != nil && v.MaxClients != nil {
				p += fmt.Sprintf(" (clients now %s/%s)", fmtN(float64(*v.ConnectedClients)), fmtN(float64(*v.MaxClients)))
			}
			parts = append(parts, p)
		}
		if _, ok := has["conntrack_drop"]; ok {
			parts = append(parts, "conntrack table full"+ratioText(v.ConntrackCount, v.ConntrackMax))
		}
		if _, ok := has["nic_conntrack_allowance_exceeded"]; ok {
			parts = append(parts, "NIC conntrack allowance exceeded")
		}
		if _, ok := has["nic_pps_allowance_exceeded"]; ok {
			parts = append(parts, "NIC packet-rate allowance exceeded")
		}
		if s, ok := has["mitigation_drops"]; ok {
			parts = append(parts, "stormguard's mitigation dropping "+fmtN(s.Value)+" SYNs/s")
		}
		if _, ok := has["short_lived_connections"]; ok {
			parts = append(parts, "new connections closing again at once")
		}
		if _, ok := has["abandoned_connections"]; ok {
			parts = append(parts, "connections abandoned before they became clients")
		}
		if v.DroppedRate != nil && *v.DroppedRate > 0 {
			p := fmtN(*v.DroppedRate) + " dropped connections/s"
			if s, ok := has["listen_drops"]; ok && !s.PerPortEvidence {
				p += " (namespace-wide, not confirmed on this port)"
			} else if _, ok := has["port_overflows"]; ok {
				p += " (counted by this port's own sockets)"
			}
			parts = append(parts, p)
		}
		if v.NewConnRate != nil {
			parts = append(parts, "new connections "+rateVsBase(*v.NewConnRate, v.NewConnBaseline))
		}
		head := "Connection storm on " + target
		if from == Recovering {
			head = "Connection storm on " + target + " resumed"
		}
		return sentence(head, parts)
	case Surge:
		if from == Recovering {
			head := "Storm on " + target + " over (" + why + ")"
			for _, s := range signals {
				if len(parts) == 3 {
					break
				}
				parts = append(parts, s.Text)
			}
			return sentence(head, parts)
		}
		for _, s := range signals {
			if len(parts) == 3 {
				break
			}
			parts = append(parts, s.Text)
		}
		return sentence("Early warning on "+target, parts) + " No connections dropped yet."
	case Recovering:
		return fmt.Sprintf("Storm on %s easing: %s (peak %s dropped connections/s, about %s dropped over %s).",
			target, why, fmtN(ep.PeakDroppedRate), fmtN(ep.Dropped), fmtDur(ep.dropDuration()))
	case Calm:
		if from == Surge {
			return fmt.Sprintf("Surge on %s passed without dropped connections (%s).", target, why)
		}
		return fmt.Sprintf("%s is calm again (%s); drops lasted %s, peak %s dropped connections/s, about %s dropped.",
			target, why, fmtDur(ep.dropDuration()), fmtN(ep.PeakDroppedRate), fmtN(ep.Dropped))
	}
	return fmt.Sprintf("%s: %s → %s.", target, from, to)
}

func sentence(head string, parts []string) string {
	if len(parts) == 0 {
		return head + "."
	}
	return head + ": " + strings.Join(parts, ", ") + "."
}

// rateVsBase renders "4,100/s vs 35/s normal" (or "(no baseline yet)").
func rateVsBase(rate float64, base *float64) string {
	if base == nil {
		return fmtN(rate) + "/s (no baseline yet)"
	}
	return fmtN(rate) + "/s vs " + fmtN(*base) + "/s normal"
}

// ratioText renders " (12/100)" or "" when either is unknown.
func ratioText(cur, max *uint64) string {
	if cur == nil || max == nil {
		return ""
	}
	return fmt.Sprintf(" (%s/%s)", fmtN(float64(*cur)), fmtN(float64(*max)))
}

func clientsText(v *View) string {
	if v.ConnectedClients == nil || v.MaxClients == nil {
		return ""
	}
	return fmt.Sprintf(", %s/%s clients", fmtN(float64(*v.ConnectedClients)), fmtN(float64(*v.MaxClients)))
}

// fmtN formats a count or rate for humans: 1,230 / 35 / 2.5.
func fmtN(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	if math.Abs(f) < 10 {
		s := strconv.FormatFloat(f, 'f', 1, 64)
		return strings.TrimSuffix(s, ".0")
	}
	if math.Abs(f) >= 1e15 {
		return strconv.FormatFloat(f, 'g', 3, 64)
	}
	n := int64(math.Round(f))
	neg := n < 0
	if neg {
		n = -n
	}
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtMS formats milliseconds with useful precision.
func fmtMS(ms float64) string {
	if ms < 1 {
		return strconv.FormatFloat(ms, 'f', 2, 64)
	}
	return fmtN(ms)
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Round(100 * time.Millisecond).String()
}
