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
//   - never below AutoDefuse.MinRate;
//   - and raises the per-source limit (ratelimit-syn) by admissionGrow
//     while it alone drops SYNs and Valkey keeps up: then it, not the
//     server, is what holds a fleet from few hosts back.
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

// limitState is one armed limit as the controller sees it.
type limitState struct {
	// rate is its rate (SYNs/s; per source for ratelimit-syn), 0 while
	// none is armed.
	rate float64
	// id is its mitigation id; packets its counter as last polled, and
	// mark the counter when the open window started.
	id            string
	packets, mark uint64
	// want is a pending re-size (0: none).
	want float64
}

// armed records a new arming of this limit at rate.
func (l *limitState) armed(id string, rate float64) {
	l.rate, l.id, l.packets, l.mark, l.want = rate, id, 0, 0, 0
}

// admission is one target's admission controller (guarded by autoState.mu).
type admission struct {
	// glob is the admission limit (ratelimit-global); src the per-source
	// limit (ratelimit-syn), which grows while it alone holds back a
	// server that keeps up, and never shrinks below --defuse-rate.
	glob, src limitState
	// The open window: when it started and the counters then.
	at        time.Time
	done, acc uint64
	open      bool
	// peaks are the completion rates of recent windows (first arming).
	peaks []ratePoint
	// why explains the pending re-sizes.
	why string
}

type ratePoint struct {
	at   time.Time
	rate float64
}

// limit returns the controller's view of action a's limit, or nil.
func (ad *admission) limit(a defuse.Action) *limitState {
	switch a {
	case defuse.RatelimitGlobal:
		return &ad.glob
	case defuse.RatelimitSYN:
		return &ad.src
	}
	return nil
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
// admissionWindow and, while the admission limit is armed, decides
// whether to re-size the limits (want). Called with autoState.mu held.
func (ad *admission) observe(o *AutoDefuse, s *sample.Sample, now time.Time) {
	done, acc, ok := admissionCounters(s)
	if !ok {
		ad.open = false
		return
	}
	if !ad.open || done < ad.done || acc < ad.acc || now.Before(ad.at) {
		ad.at, ad.done, ad.acc, ad.open = now, done, acc, true
		ad.glob.mark, ad.src.mark = ad.glob.packets, ad.src.packets
		return
	}
	dt := now.Sub(ad.at)
	if dt < admissionWindow {
		return
	}
	doneRate := float64(done-ad.done) / dt.Seconds()
	accRate := float64(acc-ad.acc) / dt.Seconds()
	globDropped, srcDropped := ad.glob.packets > ad.glob.mark, ad.src.packets > ad.src.mark
	ad.at, ad.done, ad.acc = now, done, acc
	ad.glob.mark, ad.src.mark = ad.glob.packets, ad.src.packets
	ad.peaks = append(ad.peaks, ratePoint{now, doneRate})
	for len(ad.peaks) > 0 && now.Sub(ad.peaks[0].at) > admissionHistory {
		ad.peaks = ad.peaks[1:]
	}
	if ad.glob.rate == 0 {
		return
	}
	minRate := o.MinRate.PerSecond()
	glob, src := ad.glob.rate, ad.src.rate
	behind := accRate >= minRate && doneRate < admissionEfficient*accRate
	ad.why = fmt.Sprintf("Valkey completed %.0f of %.0f accepted connections/s", doneRate, accRate)
	switch {
	case behind && accRate > admissionDrain*ad.glob.rate:
		// Valkey accepts more than the limit admits: it is working off
		// connections queued before the limit (or before a cut), most
		// of them abandoned. A lower rate would not shorten that; hold.
	case behind:
		glob = max(minRate, admissionBackoff*doneRate, ad.glob.rate/2)
	case globDropped:
		glob = ad.glob.rate * admissionGrow
		ad.why += " while the limit dropped SYNs"
	case srcDropped && src > 0:
		// Only the per-source limit holds the fleet back, and Valkey
		// keeps up: it is the bottleneck, not the server.
		src = src * admissionGrow
		ad.why += " while only the per-source limit dropped SYNs"
	}
	ad.glob.want = wantOf(ad.glob.rate, min(admissionMaxRate, glob))
	ad.src.want = wantOf(ad.src.rate, min(admissionMaxRate, src))
}

// wantOf is next as a pending re-size of a limit at cur: 0 when the change
// is too small to be worth a re-arming.
func wantOf(cur, next float64) float64 {
	if cur > 0 && math.Abs(next-cur) >= admissionStep*cur {
		return next
	}
	return 0
}

// firstRate is the rate of a new admission limit: the current one when
// re-arming, else half the highest completion rate of the last
// admissionHistory (what the server recently showed it can finish), at
// least the configured rate.
func (ad *admission) firstRate(o *AutoDefuse) float64 {
	if ad.glob.rate > 0 {
		return ad.glob.rate
	}
	r := o.Rate.PerSecond()
	for _, p := range ad.peaks {
		r = max(r, p.rate/2)
	}
	return min(r, admissionMaxRate)
}

// srcRate is the rate of a new per-source limit: the current one when
// re-arming, else the configured one.
func (ad *admission) srcRate(o *AutoDefuse) float64 {
	if ad.src.rate > 0 {
		return ad.src.rate
	}
	return o.Rate.PerSecond()
}

// perSecond is r as a whole number of SYNs per second (at least 1).
func perSecond(r float64) defuse.Rate {
	return defuse.Rate{N: uint64(max(1, math.Round(r))), Unit: "second"}
}

// resize re-arms the limits with a pending re-size. Each time the new rule
// goes in first and the old one is reverted after it, so the port is
// never without a limit (while both exist the lower rate holds); the new
// one keeps the old one's expiry.
func (a *Agent) resize(ctx context.Context, t source.Target, st *autoState, now time.Time) {
	for _, act := range []defuse.Action{defuse.RatelimitGlobal, defuse.RatelimitSYN} {
		a.resizeOne(ctx, t, st, act, now)
	}
}

func (a *Agent) resizeOne(ctx context.Context, t source.Target, st *autoState, act defuse.Action, now time.Time) {
	st.mu.Lock()
	l := st.adm.limit(act)
	rate, why := l.want, st.adm.why
	l.want = 0
	var old defuse.Mitigation
	found := false
	for _, m := range st.armed {
		if m.Action == act && m.ID == l.id {
			old, found = m, true
		}
	}
	st.mu.Unlock()
	ttl := old.Expires.Sub(now).Truncate(time.Millisecond)
	if !found || rate <= 0 || ttl < 2*admissionWindow {
		return // nothing to do, or the TTL re-arming comes first
	}
	p := defuse.Params{Port: t.Port(), TTL: ttl, Rate: perSecond(rate), RemoteOnly: act == defuse.RatelimitGlobal}
	m := a.manager(t)
	mt, err := m.Apply(ctx, act, p)
	if err != nil {
		a.defuseEvent(ctx, t, "failed", defuse.Mitigation{Action: act, Port: t.Port()}, "re-size: "+err.Error())
		return
	}
	what := "admission limit"
	if act == defuse.RatelimitSYN {
		what = "per-source limit"
	}
	a.defuseEvent(ctx, t, "applied", mt, fmt.Sprintf("%s re-sized from %s to %s: %s", what, old.Rate, mt.Rate, why))
	st.mu.Lock()
	for i := range st.armed {
		if st.armed[i].ID == old.ID {
			st.armed[i] = mt
		}
	}
	st.adm.limit(act).armed(mt.ID, float64(p.Rate.N))
	st.mu.Unlock()
	if _, err := m.Revert(ctx, old.ID); err != nil && !errors.Is(err, defuse.ErrNotFound) {
		a.defuseEvent(ctx, t, "failed", old, "revert after re-size: "+err.Error())
		return
	}
	a.defuseEvent(ctx, t, "reverted", old, "replaced by "+mt.ID+" at "+mt.Rate)
}
