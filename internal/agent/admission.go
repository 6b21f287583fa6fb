package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/stormguard/stormguard/internal/defuse"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/source"
)

// Auto mode's admission limit is ratelimit-global sized from what Valkey
// completes, not a fixed rate. A storm against a TLS server is metastable
// when the server accepts more connections than it can finish before the
// clients' timeouts: every handshake that finishes late is wasted work,
// and the clients that gave up redial. A fixed limit either admits too
// many for a server starved of CPU (the loop goes on inside the limit) or
// too few for one that could take more (recovery takes longer than it
// must). So the agent measures, over windows of admissionWindow, how many
// connections Valkey accepted (eBPF, else the namespace's passive opens)
// and how many became clients (INFO total_connections_received), and
//   - holds it while Valkey accepts more than the limit admits (it is
//     working off connections queued before the limit, most of them
//     abandoned: a lower rate would not shorten that);
//   - cuts the rate when fewer than admissionEfficient of the accepted
//     ones became clients (clients gave up in the queue or mid-handshake):
//     to admissionBackoff of what Valkey completed, but at most by half per
//     window (the first windows after arming drain connections abandoned
//     before the limit);
//   - raises it by admissionGrow while the limit is dropping SYNs and
//     Valkey finishes what it is given;
//   - never below AutoDefuse.MinRate.
//
// Connections from this host (loopback) are left out of the limit
// (defuse.Params.RemoteOnly): the agent's own Valkey connection, killed
// with the rest in a storm, must get back to read INFO.
const (
	admissionWindow    = time.Second
	admissionEfficient = 0.75
	admissionBackoff   = 0.8
	admissionGrow      = 1.5
	// admissionDrain: accepting more than this times the rate means
	// Valkey is draining a queue older than the limit.
	admissionDrain = 1.2
	// admissionStep is the smallest relative change worth re-arming for.
	admissionStep = 0.25
	// admissionHistory is how far back the completion peak that sizes
	// the first arming looks.
	admissionHistory = time.Minute
	// admissionMaxRate bounds the rate (nftables takes 64 bits; this is
	// far above any server's handshake rate).
	admissionMaxRate = 1e6
)

// admission is one target's admission controller (guarded by autoState.mu).
type admission struct {
	// rate is the armed limit's rate (SYNs/s), 0 while none is armed.
	rate float64
	// The open window: when it started and the counters then.
	at            time.Time
	done, acc     uint64
	drops         uint64
	open          bool
	globalID      string // the armed ratelimit-global's mitigation id
	globalPackets uint64 // its counter, as last polled
	// peaks are the completion rates of recent windows (first arming).
	peaks []ratePoint
	// want is a pending re-size (0: none) and why.
	want float64
	why  string
}

type ratePoint struct {
	at   time.Time
	rate float64
}

// counters returns the cumulative counts a window needs from one sample:
// connections that became Valkey clients, and connections accepted from
// the listener. ok is false when either is missing or stale (a carried
// INFO reading).
func admissionCounters(s *sample.Sample) (done, acc uint64, ok bool) {
	if s == nil || s.Valkey == nil || s.Valkey.TotalConnectionsReceived == nil {
		return 0, 0, false
	}
	if _, carried := s.SourceAgeMS["valkey"]; carried {
		return 0, 0, false
	}
	done = *s.Valkey.TotalConnectionsReceived
	switch {
	case s.Accepts != nil:
		acc = *s.Accepts
	case s.TCP != nil && s.TCP.PassiveOpens != nil:
		acc = *s.TCP.PassiveOpens
	default:
		return 0, 0, false
	}
	return done, acc, true
}

// observe feeds one sample to the controller; it closes a window every
// admissionWindow and, while a limit is armed, decides whether to re-size
// it (want). Called with autoState.mu held.
func (ad *admission) observe(o *AutoDefuse, s *sample.Sample, now time.Time) {
	done, acc, ok := admissionCounters(s)
	if !ok {
		ad.open = false
		return
	}
	if !ad.open || done < ad.done || acc < ad.acc || now.Before(ad.at) {
		ad.at, ad.done, ad.acc, ad.drops, ad.open = now, done, acc, ad.globalPackets, true
		return
	}
	dt := now.Sub(ad.at)
	if dt < admissionWindow {
		return
	}
	doneRate := float64(done-ad.done) / dt.Seconds()
	accRate := float64(acc-ad.acc) / dt.Seconds()
	dropped := ad.globalPackets > ad.drops
	ad.at, ad.done, ad.acc, ad.drops = now, done, acc, ad.globalPackets
	ad.peaks = append(ad.peaks, ratePoint{now, doneRate})
	for len(ad.peaks) > 0 && now.Sub(ad.peaks[0].at) > admissionHistory {
		ad.peaks = ad.peaks[1:]
	}
	if ad.rate == 0 {
		return
	}
	minRate := o.MinRate.PerSecond()
	next, why := ad.rate, ""
	switch {
	case accRate > admissionDrain*ad.rate && doneRate < admissionEfficient*accRate:
		// Valkey accepts more than the limit admits: it is working off
		// connections queued before the limit (or before a cut), most
		// of them abandoned. A lower rate would not shorten that; hold.
	case accRate >= minRate && doneRate < admissionEfficient*accRate:
		next = max(minRate, admissionBackoff*doneRate, ad.rate/2)
		why = fmt.Sprintf("Valkey completed %.0f of %.0f accepted connections/s", doneRate, accRate)
	case dropped:
		next = min(admissionMaxRate, ad.rate*admissionGrow)
		why = fmt.Sprintf("Valkey completed %.0f of %.0f accepted connections/s while the limit dropped SYNs", doneRate, accRate)
	}
	if math.Abs(next-ad.rate) >= admissionStep*ad.rate {
		ad.want, ad.why = next, why
	} else {
		ad.want = 0
	}
}

// firstRate is the rate of a new arming: the current one when re-arming,
// else half the highest completion rate of the last admissionHistory (what
// the server recently showed it can finish), at least the configured rate.
func (ad *admission) firstRate(o *AutoDefuse) float64 {
	if ad.rate > 0 {
		return ad.rate
	}
	r := o.Rate.PerSecond()
	for _, p := range ad.peaks {
		r = max(r, p.rate/2)
	}
	return min(r, admissionMaxRate)
}

// perSecond is r as a whole number of SYNs per second (at least 1).
func perSecond(r float64) defuse.Rate {
	return defuse.Rate{N: uint64(max(1, math.Round(r))), Unit: "second"}
}

// resize re-arms the admission limit at the pending rate: the new rule
// first, then the old one reverted, so the port is never without a limit
// (while both exist the lower rate holds). It keeps the old one's expiry.
func (a *Agent) resize(ctx context.Context, t source.Target, st *autoState, now time.Time) {
	st.mu.Lock()
	rate, why := st.adm.want, st.adm.why
	st.adm.want = 0
	var old defuse.Mitigation
	found := false
	for _, m := range st.armed {
		if m.Action == defuse.RatelimitGlobal {
			old, found = m, true
		}
	}
	st.mu.Unlock()
	ttl := old.Expires.Sub(now).Truncate(time.Millisecond)
	if !found || rate <= 0 || ttl < 2*admissionWindow {
		return // the TTL re-arming comes first
	}
	m := a.manager(t)
	mt, err := m.Apply(ctx, defuse.RatelimitGlobal, defuse.Params{Port: t.Port(), TTL: ttl, Rate: perSecond(rate), RemoteOnly: true})
	if err != nil {
		a.defuseEvent(ctx, t, "failed", defuse.Mitigation{Action: defuse.RatelimitGlobal, Port: t.Port()}, "admission re-size: "+err.Error())
		return
	}
	a.defuseEvent(ctx, t, "applied", mt, fmt.Sprintf("admission limit re-sized from %s to %s: %s", old.Rate, mt.Rate, why))
	st.mu.Lock()
	for i := range st.armed {
		if st.armed[i].ID == old.ID {
			st.armed[i] = mt
		}
	}
	st.adm.rate, st.adm.globalID, st.adm.globalPackets, st.adm.drops = float64(perSecond(rate).N), mt.ID, 0, 0
	st.mu.Unlock()
	if _, err := m.Revert(ctx, old.ID); err != nil && !errors.Is(err, defuse.ErrNotFound) {
		a.defuseEvent(ctx, t, "failed", old, "revert after re-size: "+err.Error())
		return
	}
	a.defuseEvent(ctx, t, "reverted", old, "replaced by "+mt.ID+" at "+mt.Rate)
}
