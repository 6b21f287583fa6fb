package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stormguard/stormguard/internal/defuse"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/notify"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/source"
)

// AutoDefuse arms mitigations when a target enters storm and reverts them
// when it is calm again. Zero values mean the documented defaults.
type AutoDefuse struct {
	// Actions to arm, in order (default ratelimit-syn, ratelimit-global).
	// kill-idle is never armed automatically: it cannot be reverted.
	// ratelimit-global is the admission limit: sized from what Valkey
	// completes and re-sized while armed (admission.go), loopback left out.
	Actions []defuse.Action
	// TTL of each arming (60s). Every mitigation expires by itself; while
	// the storm lasts it is re-armed, up to Max in all.
	TTL time.Duration
	// Max bounds how long one storm keeps mitigations armed (10m).
	Max time.Duration
	// Rate for ratelimit-syn (per source), and the lowest first rate of
	// ratelimit-global (20/s).
	Rate defuse.Rate
	// MinRate is the smallest Rate accepted: connections are throttled,
	// never stopped (5/s).
	MinRate defuse.Rate
	// AcceptCapValue for accept-cap (100).
	AcceptCapValue int
	// StatePath is the defuse state file (defuse.DefaultStatePath).
	StatePath string
}

// ErrAutoKill is returned for kill-idle in auto mode.
var ErrAutoKill = errors.New("kill-idle cannot be armed automatically: killed clients cannot be restored (use stormguard defuse apply --action kill-idle --yes-kill by hand)")

func (o *AutoDefuse) normalize() error {
	if len(o.Actions) == 0 {
		o.Actions = []defuse.Action{defuse.RatelimitSYN, defuse.RatelimitGlobal}
	}
	for _, a := range o.Actions {
		if _, err := defuse.ParseAction(string(a)); err != nil {
			return err
		}
		if a == defuse.KillIdle {
			return ErrAutoKill
		}
	}
	if o.TTL <= 0 {
		o.TTL = time.Minute
	}
	if o.Max <= 0 {
		o.Max = 10 * time.Minute
	}
	if o.Max < o.TTL {
		return fmt.Errorf("auto defuse: maximum duration %s is shorter than the TTL %s", o.Max, o.TTL)
	}
	if o.MinRate.N == 0 {
		o.MinRate = defuse.Rate{N: 5, Unit: "second"}
	}
	if o.Rate.N == 0 {
		o.Rate = defuse.Rate{N: 20, Unit: "second"}
	}
	if o.Rate.PerSecond() < o.MinRate.PerSecond() {
		return fmt.Errorf("auto defuse: rate %s is below the minimum admitted rate %s", o.Rate, o.MinRate)
	}
	if o.AcceptCapValue == 0 {
		o.AcceptCapValue = 100
	}
	return nil
}

// autoState is one target's armed mitigations.
type autoState struct {
	mu    sync.Mutex
	busy  bool
	armed []defuse.Mitigation
	first time.Time // when this storm's first arming happened
	// packets and quietSince track the armed rules' counters: a limit that
	// is still dropping SYNs is what keeps the target calm, so it stays.
	packets    uint64
	quietSince time.Time
	// dropped is the armed rules' packet count as last polled (while a
	// storm lasts, so the detector sees that the storm is held back, not
	// over); droppedOK says the last poll succeeded.
	dropped   uint64
	droppedOK bool
	polled    time.Time
	// adm sizes the admission limit (ratelimit-global).
	adm admission
}

// mitigation is what the detector gets to know about this target's armed
// mitigations: nil when none is armed.
func (st *autoState) mitigation() *sample.Mitigation {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.armed) == 0 {
		return nil
	}
	m := &sample.Mitigation{Armed: len(st.armed)}
	if st.droppedOK {
		m.Dropped = sample.U64(st.dropped)
	}
	return m
}

// pollDropped reads the armed rules' counters (nftables, milliseconds: off
// the sampling path).
func (a *Agent) pollDropped(ctx context.Context, t source.Target, st *autoState) {
	list, err := a.manager(t).List(ctx)
	st.mu.Lock()
	defer st.mu.Unlock()
	if err != nil {
		st.droppedOK = false
		return
	}
	mine := map[string]bool{}
	for _, m := range st.armed {
		mine[m.ID] = true
	}
	var n uint64
	for _, m := range list {
		if mine[m.ID] && m.Packets != nil {
			n += *m.Packets
			if m.ID == st.adm.glob.id {
				st.adm.glob.packets = *m.Packets
			}
			if m.ID == st.adm.src.id {
				st.adm.src.packets = *m.Packets
			}
		}
	}
	st.dropped, st.droppedOK = n, true
}

// autoDefuse is called after every sample of a target.
func (a *Agent) autoDefuse(ctx context.Context, t source.Target, st *autoState, s *sample.Sample, state detect.State, now time.Time) {
	o := a.o.AutoDefuse
	if o == nil {
		return
	}
	st.mu.Lock()
	st.adm.observe(o, s, now)
	if st.busy {
		st.mu.Unlock()
		return
	}
	var work func()
	due := false
	for _, m := range st.armed {
		if !now.Before(m.Expires) {
			due = true
		}
	}
	switch {
	case due:
		// In every state: a mitigation ends at its TTL. An accept cap
		// that keeps the target out of calm (or one armed before a
		// recovering or surge phase) must not outlive it; a restore
		// process or timer does the same without us.
		work = func() { a.expireArmed(ctx, t, st, now) }
	case state == detect.Storm:
		if st.first.IsZero() {
			st.first = now
		}
		live := false
		for _, m := range st.armed {
			if m.Expires.After(now.Add(time.Second)) {
				live = true
			}
		}
		if !live && now.Sub(st.first) < o.Max {
			ttl := o.TTL
			if left := o.Max - now.Sub(st.first); left < ttl {
				ttl = left
			}
			work = func() { a.arm(ctx, t, st, ttl) }
		} else if live {
			work = st.liveWork(ctx, a, t, now)
		}
	case state == detect.Recovering || state == detect.Surge:
		if len(st.armed) > 0 {
			work = st.liveWork(ctx, a, t, now)
		}
	case state == detect.Calm:
		if len(st.armed) > 0 {
			work = func() { a.maybeDisarm(ctx, t, st, now) }
		} else {
			st.first, st.adm.glob.rate, st.adm.src.rate, st.adm.cut = time.Time{}, 0, 0, false
		}
	}
	if work == nil {
		st.mu.Unlock()
		return
	}
	a.defuseMu.Lock()
	if a.stopping {
		a.defuseMu.Unlock()
		st.mu.Unlock()
		return
	}
	a.defuseWork.Add(1)
	a.defuseMu.Unlock()
	st.busy = true
	st.mu.Unlock()
	// Netlink and CONFIG SET take milliseconds: never on the sampling path.
	go func() {
		defer a.defuseWork.Done()
		work()
		st.mu.Lock()
		st.busy = false
		st.mu.Unlock()
	}()
}

// liveWork is the work while mitigations are armed outside calm: a
// pending re-size of the admission limit, else a counter poll. Called with
// st.mu held.
func (st *autoState) liveWork(ctx context.Context, a *Agent, t source.Target, now time.Time) func() {
	if st.adm.glob.want > 0 || st.adm.src.want > 0 {
		return func() { a.resize(ctx, t, st, now) }
	}
	return st.pollWork(ctx, a, t, now)
}

// pollWork returns a poll of the armed rules' counters, at most once per
// pollEvery, or nil. Called with st.mu held.
func (st *autoState) pollWork(ctx context.Context, a *Agent, t source.Target, now time.Time) func() {
	if now.Sub(st.polled) < pollEvery && !now.Before(st.polled) {
		return nil
	}
	st.polled = now
	return func() { a.pollDropped(ctx, t, st) }
}

// pollEvery spaces the counter polls while a mitigation is armed: often
// enough that a storm held back by the limit never looks quiet for the
// detector's StormQuiet.
const pollEvery = 500 * time.Millisecond

func (a *Agent) manager(t source.Target) *defuse.Manager {
	return &defuse.Manager{StatePath: a.o.AutoDefuse.StatePath, NetNS: t.NetNS, Valkey: t.Addr, Logger: a.o.Logger}
}

func (a *Agent) arm(ctx context.Context, t source.Target, st *autoState, ttl time.Duration) {
	o := a.o.AutoDefuse
	m := a.manager(t)
	st.mu.Lock()
	admRate, srcRate := perSecond(st.adm.firstRate(o)), o.Rate
	if st.adm.src.rate > 0 {
		srcRate = perSecond(st.adm.srcRate(o))
	}
	st.mu.Unlock()
	var armed []defuse.Mitigation
	for _, act := range o.Actions {
		p := defuse.Params{Port: t.Port(), TTL: ttl}
		switch act {
		case defuse.RatelimitSYN:
			p.Rate = srcRate
		case defuse.RatelimitGlobal:
			p.Rate, p.RemoteOnly = admRate, true
		case defuse.AcceptCap:
			p.Value = o.AcceptCapValue
		}
		mt, err := m.Apply(ctx, act, p)
		if err != nil {
			a.defuseEvent(ctx, t, "failed", defuse.Mitigation{Action: act, Port: t.Port()}, err.Error())
			continue
		}
		armed = append(armed, mt)
		a.defuseEvent(ctx, t, "applied", mt, fmt.Sprintf("storm detected: %s armed for %s", act, ttl))
	}
	st.mu.Lock()
	// Re-arming replaces the entries of the actions it applied (the
	// manager superseded them; counters start at 0). An earlier entry
	// whose re-arming failed stays: it is still applied, and the agent
	// must still end it at its TTL.
	applied := map[defuse.Action]bool{}
	for _, mt := range armed {
		applied[mt.Action] = true
	}
	for _, mt := range st.armed {
		if !applied[mt.Action] {
			armed = append(armed, mt)
		}
	}
	for _, mt := range armed {
		switch {
		case !applied[mt.Action]:
		case mt.Action == defuse.RatelimitGlobal:
			st.adm.glob.armed(mt.ID, admRate.PerSecond())
			st.adm.open = false // the next window measures this limit only
		case mt.Action == defuse.RatelimitSYN:
			st.adm.src.armed(mt.ID, srcRate.PerSecond())
		}
	}
	st.armed, st.packets, st.quietSince = armed, 0, time.Time{}
	st.dropped, st.droppedOK = 0, len(armed) > 0
	st.mu.Unlock()
}

// expireArmed ends the armed mitigations whose TTL is over: the manager's
// Expire restores what the scheduled restorer has not restored yet.
func (a *Agent) expireArmed(ctx context.Context, t source.Target, st *autoState, now time.Time) {
	if _, err := a.manager(t).Expire(ctx); err != nil {
		a.defuseEvent(ctx, t, "failed", defuse.Mitigation{Port: t.Port()}, "expire: "+err.Error())
	}
	st.mu.Lock()
	var live, ended []defuse.Mitigation
	for _, m := range st.armed {
		if now.Before(m.Expires) {
			live = append(live, m)
		} else {
			ended = append(ended, m)
		}
	}
	st.armed = live
	st.mu.Unlock()
	for _, m := range ended {
		a.defuseEvent(ctx, t, "reverted", m, "TTL "+m.TTL+" is over")
	}
}

// holdQuiet is how long an armed limit must have dropped nothing before a
// calm target's mitigations are reverted.
const holdQuiet = 5 * time.Second

// maybeDisarm reverts a calm target's mitigations unless they are still
// dropping: the detector cannot see SYNs the limit drops before TCP, so a
// storm held back by the limit looks calm. Reverting then would let it
// straight back in.
func (a *Agent) maybeDisarm(ctx context.Context, t source.Target, st *autoState, now time.Time) {
	list, err := a.manager(t).List(ctx)
	if err != nil {
		a.disarm(ctx, t, st, "target is calm again")
		return
	}
	st.mu.Lock()
	mine := map[string]bool{}
	for _, m := range st.armed {
		mine[m.ID] = true
	}
	var packets uint64
	for _, m := range list {
		if mine[m.ID] && m.Packets != nil {
			packets += *m.Packets
		}
	}
	if packets != st.packets || st.quietSince.IsZero() {
		st.packets, st.quietSince = packets, now
	}
	quiet := now.Sub(st.quietSince)
	st.mu.Unlock()
	if quiet < holdQuiet {
		return
	}
	a.disarm(ctx, t, st, fmt.Sprintf("target is calm again and the mitigation dropped nothing for %s", quiet.Round(time.Second)))
}

func (a *Agent) disarm(ctx context.Context, t source.Target, st *autoState, why string) {
	st.mu.Lock()
	armed := st.armed
	st.armed, st.first, st.packets, st.quietSince = nil, time.Time{}, 0, time.Time{}
	st.dropped, st.droppedOK = 0, false
	st.adm.glob, st.adm.src, st.adm.cut = limitState{}, limitState{}, false
	st.mu.Unlock()
	m := a.manager(t)
	for _, mt := range armed {
		if _, err := m.Revert(ctx, mt.ID); err != nil && !errors.Is(err, defuse.ErrNotFound) {
			a.defuseEvent(ctx, t, "failed", mt, "revert: "+err.Error())
			continue
		}
		a.defuseEvent(ctx, t, "reverted", mt, why)
	}
}

// DisarmAll reverts whatever auto mode armed (agent shutdown).
func (a *Agent) disarmAll(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.runners {
		if r.auto != nil {
			a.mu.Unlock()
			a.disarm(ctx, r.target, r.auto, "agent stopping")
			a.mu.Lock()
		}
	}
}

func (a *Agent) defuseEvent(ctx context.Context, t source.Target, what string, mt defuse.Mitigation, reason string) {
	a.event(ctx, DefuseEvent{Time: time.Now().UTC(), Type: "defuse", Target: t.Name(), Action: what,
		Mitigation: mt, Reason: reason})
	if a.o.Notifier != nil {
		a.o.Notifier.Notify(notify.Alert{Kind: "defuse", Time: time.Now().UTC(), Target: t.Name(), To: what,
			Verdict: fmt.Sprintf("stormguard %s %s on %s: %s", what, mt.Action, t.Name(), reason)})
	}
}
