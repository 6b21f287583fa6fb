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
// and how many became clients (INFO total_connections_received) — with
// no INFO for admissionBlind, whether the accept queue overflowed — and
//   - holds it while Valkey accepts more than the limit admits (it is
//     working off connections queued before the limit, most of them
//     abandoned: a lower rate would not shorten that);
//   - cuts the rate when fewer than admissionEfficient of the accepted
//     ones became clients (clients gave up in the queue or mid-handshake),
//     or, without INFO, when the accept queue overflowed (more admitted
//     than Valkey accepts):
//     to admissionBackoff of what Valkey completed, but at most by half per
//     window (the first windows after arming drain connections abandoned
//     before the limit);
//   - raises it by admissionGrow (admissionGrowCut once it has been cut)
//     while the limit is dropping SYNs, Valkey finishes what it is given
//     and its main thread has room (below admissionBusyCPU of a CPU: the
//     established clients' commands share it);
//   - never below AutoDefuse.MinRate;
//   - and raises the per-source limit (ratelimit-syn) by admissionGrow
//     while it alone drops SYNs and Valkey keeps up: then it, not the
//     server, is what holds a fleet from few hosts back.
//
// Connections from this host (loopback) are left out of the limit
// (defuse.Params.RemoteOnly): the agent's own Valkey connection, killed
// with the rest in a storm, must get back to read INFO.
const (
	admissionWindow = time.Second
	// admissionBlind is how long a window waits for INFO before it
	// decides on the kernel's counts alone.
	admissionBlind     = 3 * time.Second
	admissionEfficient = 0.75
	admissionBackoff   = 0.8
	admissionGrow      = 1.5
	// admissionGrowCut is the growth once this storm has had a cut: the
	// rate is near what Valkey can take, probe gently.
	admissionGrowCut = 1.25
	// admissionBusyCPU: with Valkey's main thread this busy, the rate
	// does not grow.
	admissionBusyCPU = 0.8
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
	// The open window: when it started and the reading then.
	at    time.Time
	start reading
	open  bool
	// peaks are the completion rates of recent windows (first arming).
	peaks []ratePoint
	// why explains the pending re-sizes.
	why string
	// cut says this storm's admission limit has been cut once.
	cut bool
}

// grow is the growth factor for the next increase.
func (ad *admission) grow() float64 {
	if ad.cut {
		return admissionGrowCut
	}
	return admissionGrow
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

// reading is what one sample gives the controller: cumulative counts of
// connections accepted from the listener (eBPF, else the namespace's
// passive opens), of listen-queue overflows (the port's, else the
// namespace's), and, when INFO was read for this sample, of connections
// that became Valkey clients.
type reading struct {
	acc, ovf, done uint64
	ovfOK, doneOK  bool
	// cpu is Valkey's used_cpu_user + used_cpu_sys (seconds), with INFO.
	cpu float64
}

// readingOf returns s's reading; ok is false without the kernel's accept
// count. A carried INFO reading (not read for this sample) does not count.
func readingOf(s *sample.Sample) (r reading, ok bool) {
	if s == nil {
		return r, false
	}
	switch {
	case s.Accepts != nil:
		r.acc = *s.Accepts
	case s.TCP != nil && s.TCP.PassiveOpens != nil:
		r.acc = *s.TCP.PassiveOpens
	default:
		return r, false
	}
	switch {
	case s.Listen != nil && s.Listen.OverflowsPort != nil:
		r.ovf, r.ovfOK = *s.Listen.OverflowsPort, true
	case s.TCP != nil && s.TCP.ListenOverflows != nil:
		r.ovf, r.ovfOK = *s.TCP.ListenOverflows, true
	}
	if _, carried := s.SourceAgeMS["valkey"]; !carried && s.Valkey != nil && s.Valkey.TotalConnectionsReceived != nil {
		r.done, r.doneOK = *s.Valkey.TotalConnectionsReceived, true
		if s.Valkey.UsedCPUUser != nil && s.Valkey.UsedCPUSys != nil {
			r.cpu = *s.Valkey.UsedCPUUser + *s.Valkey.UsedCPUSys
		}
	}
	return r, true
}

// window is what one closed window measured.
type window struct {
	accRate, doneRate float64
	doneOK            bool // INFO at both ends
	// cpu is the share of one CPU Valkey used (its main thread does the
	// handshakes and every established client's commands).
	cpu         float64
	overflowed  bool // the accept queue overflowed in it
	globDropped bool
	srcDropped  bool
}

// observe feeds one sample to the controller; it closes a window once it
// spans admissionWindow with INFO at both ends — or admissionBlind
// without (a Valkey starved of CPU answers INFO late or not at all, and
// the agent's own reconnect waits in the same full queue: the kernel's
// counts must do then) — and, while the admission limit is armed, decides
// whether to re-size the limits (want). Called with autoState.mu held.
func (ad *admission) observe(o *AutoDefuse, s *sample.Sample, now time.Time) {
	r, ok := readingOf(s)
	if !ok {
		return
	}
	start := ad.start
	dt := now.Sub(ad.at)
	switch {
	case !ad.open || r.acc < start.acc || (r.doneOK && start.doneOK && r.done < start.done) || dt < 0,
		// A window that began without INFO starts again at the first
		// sample with it, while there is time for a full one.
		r.doneOK && !start.doneOK && dt < admissionBlind-admissionWindow:
		ad.at, ad.start, ad.open = now, r, true
		ad.glob.mark, ad.src.mark = ad.glob.packets, ad.src.packets
		return
	case dt < admissionWindow, dt < admissionBlind && !(r.doneOK && start.doneOK):
		return
	}
	w := window{accRate: float64(r.acc-start.acc) / dt.Seconds(), doneOK: r.doneOK && start.doneOK,
		overflowed:  r.ovfOK && start.ovfOK && r.ovf > start.ovf,
		globDropped: ad.glob.packets > ad.glob.mark, srcDropped: ad.src.packets > ad.src.mark}
	if w.doneOK {
		w.doneRate = float64(r.done-start.done) / dt.Seconds()
		w.cpu = (r.cpu - start.cpu) / dt.Seconds()
		ad.peaks = append(ad.peaks, ratePoint{now, w.doneRate})
	}
	ad.at, ad.start = now, r
	ad.glob.mark, ad.src.mark = ad.glob.packets, ad.src.packets
	for len(ad.peaks) > 0 && now.Sub(ad.peaks[0].at) > admissionHistory {
		ad.peaks = ad.peaks[1:]
	}
	if ad.glob.rate > 0 {
		ad.decide(o, w)
	}
}

// decide sets the pending re-sizes from one window.
func (ad *admission) decide(o *AutoDefuse, w window) {
	minRate := o.MinRate.PerSecond()
	glob, src := ad.glob.rate, ad.src.rate
	// Behind: Valkey finished too few of the connections it accepted.
	// Without INFO: the accept queue overflowed (the limit admits more
	// than Valkey accepts), and what Valkey accepted stands in for what it
	// completed. (With INFO an overflow alone is not enough: a re-armed
	// per-source limit's fresh bursts can overflow a short queue that
	// Valkey keeps up with.)
	behind := w.doneOK && w.accRate >= minRate && w.doneRate < admissionEfficient*w.accRate
	finished := w.doneRate
	ad.why = fmt.Sprintf("Valkey completed %.0f of %.0f accepted connections/s", w.doneRate, w.accRate)
	if !w.doneOK {
		behind, finished = w.overflowed, w.accRate
		ad.why = fmt.Sprintf("Valkey accepted %.0f connections/s (no INFO)", w.accRate)
		if w.overflowed {
			ad.why += " and its accept queue overflowed"
		}
	}
	switch {
	case behind && w.accRate > admissionDrain*ad.glob.rate:
		// Valkey accepts more than the limit admits: it is working off
		// connections queued before the limit (or before a cut), most
		// of them abandoned. A lower rate would not shorten that; hold.
	case behind:
		glob = max(minRate, admissionBackoff*finished, ad.glob.rate/2)
	case !w.doneOK:
		// Growing needs evidence that Valkey finishes what it gets.
	case w.cpu >= admissionBusyCPU:
		// Valkey keeps up but has no room left: more handshakes would
		// come out of the established clients' commands (whose own
		// timeouts would then start the next storm).
	case w.globDropped:
		glob = ad.glob.rate * ad.grow()
		ad.why += fmt.Sprintf(" (%.0f%% of a CPU) while the limit dropped SYNs", 100*w.cpu)
	case w.srcDropped && src > 0:
		// Only the per-source limit holds the fleet back, and Valkey
		// keeps up: it is the bottleneck, not the server.
		src = src * ad.grow()
		ad.why += fmt.Sprintf(" (%.0f%% of a CPU) while only the per-source limit dropped SYNs", 100*w.cpu)
	}
	if glob < ad.glob.rate {
		ad.cut = true
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
	st.adm.open = false // the next window measures the new rate only
	st.mu.Unlock()
	if _, err := m.Revert(ctx, old.ID); err != nil && !errors.Is(err, defuse.ErrNotFound) {
		a.defuseEvent(ctx, t, "failed", old, "revert after re-size: "+err.Error())
		return
	}
	a.defuseEvent(ctx, t, "reverted", old, "replaced by "+mt.ID+" at "+mt.Rate)
}
