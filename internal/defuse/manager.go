package defuse

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
)

// ErrRefused is wrapped when a mitigation is refused because applying it
// would be unsafe or useless here (the error says why).
var ErrRefused = errors.New("refused")

// ErrNotFound is wrapped when revert names no active mitigation.
var ErrNotFound = errors.New("no such mitigation")

// kernel is the nftables side of the manager.
type kernel interface {
	install(spec nftSpec) error
	state() (kernelState, error)
	remove(ids map[string]bool) error
	trackingDependents(port int) ([]string, error)
	Close()
}

// kernelState is what the kernel holds in table inet stormguard.
type kernelState struct {
	// Armed maps a mitigation id to the time its arm element has left.
	Armed map[string]time.Duration
	// Present lists every id that has a set or a rule in the table.
	Present map[string]bool
	// Actions maps an id to the action named in its rule comments.
	Actions map[string]Action
	// Packets maps an id to the packets its rules' counters have matched.
	Packets map[string]uint64
}

func newKernelState() kernelState {
	return kernelState{Armed: map[string]time.Duration{}, Present: map[string]bool{}, Actions: map[string]Action{}, Packets: map[string]uint64{}}
}

func actionFromComment(c string) Action {
	rest, ok := strings.CutPrefix(c, commentPrefix)
	if !ok {
		return ""
	}
	_, a, _ := strings.Cut(rest, " ")
	return Action(a)
}

// Manager applies, lists, expires and reverts mitigations for one target.
// Zero fields mean defaults. Every exported method starts by expiring what
// is due, under an exclusive lock on the state file.
type Manager struct {
	// StatePath is the state file (DefaultStatePath).
	StatePath string
	// NetNS is the target's network namespace path ("" = ours).
	NetNS string
	// Valkey is the target's address; its password (if any) is also used
	// to restore config of mitigations applied earlier.
	Valkey addr.Addr
	// Now is the clock (time.Now).
	Now func() time.Time
	// Logger gets warnings about restores that failed (discarded if nil).
	Logger *slog.Logger

	// kernelFn replaces openKernel in tests.
	kernelFn func(ns string) (kernel, error)
	// scheduleFn replaces scheduleRestore in tests.
	scheduleFn func(mt *Mitigation)
}

func (m *Manager) kernel(ns string) (kernel, error) {
	if m.kernelFn != nil {
		return m.kernelFn(ns)
	}
	return openKernel(ns)
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) statePath() string {
	if m.StatePath == "" {
		return DefaultStatePath
	}
	return m.StatePath
}

func (m *Manager) log() *slog.Logger {
	if m.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Logger
}

// locked runs fn with the state loaded under the lock, after expiring what
// is due, and saves the state if fn changed it.
func (m *Manager) locked(ctx context.Context, fn func(st *stateFile) (bool, error)) ([]Mitigation, error) {
	unlock, err := lockState(m.statePath())
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := loadState(m.statePath())
	if err != nil {
		return nil, err
	}
	expired, changed := m.expire(ctx, &st)
	var ferr error
	if fn != nil {
		var c bool
		c, ferr = fn(&st)
		changed = changed || c
	}
	if changed {
		if err := saveState(m.statePath(), st); err != nil {
			return expired, errors.Join(ferr, err)
		}
	}
	return expired, ferr
}

// Expire restores and removes every mitigation whose TTL is over (or whose
// kernel rules already lapsed), and deletes leftover nftables objects of
// expired mitigations in the manager's namespace. It returns what expired.
func (m *Manager) Expire(ctx context.Context) ([]Mitigation, error) {
	return m.locked(ctx, nil)
}

func (m *Manager) expire(ctx context.Context, st *stateFile) ([]Mitigation, bool) {
	now := m.now()
	states := map[string]*kernelState{} // by netns; nil = could not read
	kstate := func(ns string) *kernelState {
		if ks, ok := states[ns]; ok {
			return ks
		}
		var ks *kernelState
		if k, err := m.kernel(ns); err == nil {
			if s, err := k.state(); err == nil {
				ks = &s
			}
			k.Close()
		}
		states[ns] = ks
		return ks
	}
	var keep, expired []Mitigation
	changed := false
	for _, mt := range st.Mitigations {
		if mt.NetNS != "" {
			if _, err := os.Stat(mt.NetNS); errors.Is(err, fs.ErrNotExist) {
				// The namespace is gone, and with it its rules and
				// sysctls: nothing is left to restore.
				changed = true
				expired = append(expired, mt)
				continue
			}
		}
		due := !now.Before(mt.Expires)
		if !due && mt.Action.nft() {
			if ks := kstate(mt.NetNS); ks != nil {
				if _, armed := ks.Armed[mt.ID]; !armed {
					due = true // lapsed in the kernel or deleted by hand
				}
			}
		}
		if !due {
			keep = append(keep, mt)
			continue
		}
		if err := m.undo(ctx, mt); err != nil {
			m.log().Warn("defuse: restore of expired mitigation failed; will retry", "id", mt.ID, "action", mt.Action, "err", err)
			keep = append(keep, mt)
			continue
		}
		m.cancelRestore(mt)
		changed = true
		expired = append(expired, mt)
		delete(states, mt.NetNS) // the kernel changed; read it afresh
	}
	st.Mitigations = keep
	// Orphans in our namespace: objects whose arm element lapsed but that
	// no state entry owns (a crash between install and save, a lost state
	// file). The kernel already stopped them; this tidies up.
	if ks := kstate(m.NetNS); ks != nil {
		owned := map[string]bool{}
		for _, mt := range keep {
			owned[mt.ID] = true
		}
		dead := map[string]bool{}
		for id := range ks.Present {
			if _, armed := ks.Armed[id]; !armed && !owned[id] {
				dead[id] = true
			}
		}
		if len(dead) > 0 {
			if k, err := m.kernel(m.NetNS); err == nil {
				if err := k.remove(dead); err != nil {
					m.log().Warn("defuse: removing lapsed nftables objects failed", "err", err)
				}
				k.Close()
			}
		}
	}
	return expired, changed
}

// List returns the active mitigations: not expired, not reverted, and for
// kernel rules still armed in the kernel. Rules found armed in the
// manager's namespace but missing from the state file are listed too, with
// a note, so the list matches the kernel.
func (m *Manager) List(ctx context.Context) ([]Mitigation, error) {
	var out []Mitigation
	packets := map[string]uint64{}
	_, err := m.locked(ctx, func(st *stateFile) (bool, error) {
		out = append(out, st.Mitigations...)
		defer func() {
			for i := range out {
				if d, ok := packets[out[i].ID]; ok {
					out[i].Packets = &d
				}
			}
		}()
		known := map[string]bool{}
		for _, mt := range st.Mitigations {
			known[mt.ID] = true
		}
		k, err := m.kernel(m.NetNS)
		if err != nil {
			return false, nil
		}
		defer k.Close()
		ks, err := k.state()
		if err != nil {
			return false, nil
		}
		for id, d := range ks.Packets {
			packets[id] = d
		}
		now := m.now()
		for _, id := range keys(ks.Armed) {
			if known[id] {
				continue
			}
			out = append(out, Mitigation{
				ID: id, Action: ks.Actions[id], NetNS: m.NetNS, Expires: now.Add(ks.Armed[id]).UTC(),
				KernelExpiry: true, Reversible: true,
				Notes: []string{"found in nftables table inet " + TableName + " but not in the state file"},
			})
		}
		return false, nil
	})
	return out, err
}

// Revert undoes the mitigation with id now. A kernel-armed mitigation
// missing from the state file (see List) can be reverted too.
func (m *Manager) Revert(ctx context.Context, id string) (Mitigation, error) {
	var got Mitigation
	_, err := m.locked(ctx, func(st *stateFile) (bool, error) {
		for i, mt := range st.Mitigations {
			if mt.ID != id {
				continue
			}
			if err := m.undo(ctx, mt); err != nil {
				return false, fmt.Errorf("revert %s (%s): %w", id, mt.Action, err)
			}
			m.cancelRestore(mt)
			st.Mitigations = append(st.Mitigations[:i], st.Mitigations[i+1:]...)
			got = mt
			return true, nil
		}
		if k, err := m.kernel(m.NetNS); err == nil {
			defer k.Close()
			if ks, err := k.state(); err == nil && ks.Present[id] {
				if err := k.remove(map[string]bool{id: true}); err != nil {
					return false, fmt.Errorf("revert %s: %w", id, err)
				}
				got = Mitigation{ID: id, Action: ks.Actions[id], NetNS: m.NetNS, Reversible: true}
				return false, nil
			}
		}
		return false, fmt.Errorf("%w %q (see stormguard defuse list)", ErrNotFound, id)
	})
	return got, err
}

// env is where the manager's own mitigations act.
func (m *Manager) env() actEnv {
	return actEnv{NetNS: m.NetNS, Valkey: m.Valkey, kernel: m.kernel, warn: m.log().Warn}
}

// undo reverses one recorded mitigation with its actuator.
func (m *Manager) undo(ctx context.Context, mt Mitigation) error {
	act, err := actuatorOf(mt.Action)
	if err != nil {
		return err
	}
	env := actEnv{NetNS: mt.NetNS, kernel: m.kernel, warn: m.log().Warn}
	if mt.Valkey != "" {
		if env.Valkey, err = m.restoreAddr(mt); err != nil {
			return err
		}
	}
	return act.undo(ctx, env, mt)
}

// password is the manager's (current flags / environment), never stored.
func (m *Manager) restoreAddr(mt Mitigation) (addr.Addr, error) {
	a, err := addr.Parse(mt.Valkey)
	if err != nil {
		return a, fmt.Errorf("recorded Valkey address: %w", err)
	}
	if mt.Restore != nil {
		a.User, a.TLS = mt.Restore.ValkeyUser, mt.Restore.ValkeyTLS
	}
	if m.Valkey.HostPort() == a.HostPort() || m.Valkey.Password != "" {
		a.Password = m.Valkey.Password
		a.TLSInsecure = m.Valkey.TLSInsecure
	}
	return a, nil
}

// Apply validates p and applies action a (or, with p.DryRun, reports what
// it would change without changing anything).
func (m *Manager) Apply(ctx context.Context, a Action, p Params) (Mitigation, error) {
	act, err := actuatorOf(a)
	if err != nil {
		return Mitigation{}, err
	}
	if p.Port == 0 && !a.nft() {
		p.Port = m.Valkey.Port
	}
	if err := p.Validate(a); err != nil {
		return Mitigation{}, err
	}
	id, err := newID()
	if err != nil {
		return Mitigation{}, err
	}
	now := m.now().UTC()
	mt := Mitigation{
		ID: id, Action: a, Port: p.Port, NetNS: m.NetNS, Applied: now, Expires: now.Add(p.TTL),
		TTL: p.TTL.String(), Reversible: a != KillIdle, DryRun: p.DryRun, Changes: []string{},
		KernelExpiry: act.kernelExpiry(),
	}
	switch {
	case !mt.Reversible:
		mt.Expires, mt.RestoreBy = mt.Applied, RestoreByNone
	case mt.KernelExpiry:
		mt.RestoreBy = RestoreByKernel
	case p.DryRun:
		mt.RestoreBy = RestoreByProcess
		if systemdUsable() {
			mt.RestoreBy = RestoreBySystemdTimer
		}
	}
	_, err = m.locked(ctx, func(st *stateFile) (bool, error) {
		if err := act.apply(ctx, m.env(), &mt, p); err != nil {
			return false, err
		}
		if p.DryRun || !mt.Reversible {
			return false, nil
		}
		if !mt.KernelExpiry {
			m.supersede(st, &mt)
		}
		// Scheduled under the lock: the restorer reads the state only
		// after taking it, so it always finds this entry. For kernel
		// rules it only tidies up (state entry, empty nftables objects):
		// the kernel has already stopped them.
		m.scheduleRestore(&mt)
		st.Mitigations = append(st.Mitigations, mt)
		return true, nil
	})
	if err != nil {
		return Mitigation{}, err
	}
	return mt, nil
}

// supersede hands an earlier, still active mitigation of the same action
// on the same target over to mt: mt restores the earlier one's original
// values (what it read as "current" is the earlier one's setting), and the
// earlier entry and its restorer go away. Without this, re-arming
// accept-cap before the previous arming was restored would "restore" the
// cap itself.
func (m *Manager) supersede(st *stateFile, mt *Mitigation) {
	if mt.Restore == nil {
		return
	}
	keep := st.Mitigations[:0]
	for _, old := range st.Mitigations {
		if old.Action != mt.Action || old.NetNS != mt.NetNS || old.Valkey != mt.Valkey || old.Restore == nil {
			keep = append(keep, old)
			continue
		}
		mt.Restore.Config, mt.Restore.AppliedConfig = takeOver(mt.Restore.Config, mt.Restore.AppliedConfig, old.Restore.Config, old.Restore.AppliedConfig)
		mt.Restore.Sysctls, mt.Restore.AppliedSysctls = takeOver(mt.Restore.Sysctls, mt.Restore.AppliedSysctls, old.Restore.Sysctls, old.Restore.AppliedSysctls)
		mt.Notes = append(mt.Notes, "replaces "+old.ID+", whose original values it restores")
		m.cancelRestore(old)
	}
	st.Mitigations = keep
}

// takeOver merges an earlier mitigation's originals into a new one's: a
// key the new one changed again restores the earlier original; a key only
// the earlier one changed keeps its original and applied value.
func takeOver(orig, applied, oldOrig, oldApplied map[string]string) (map[string]string, map[string]string) {
	for k, v := range oldOrig {
		if _, ok := orig[k]; ok {
			if oldApplied[k] == orig[k] {
				orig[k] = v
			}
			continue
		}
		if orig == nil {
			orig = map[string]string{}
		}
		if applied == nil {
			applied = map[string]string{}
		}
		orig[k] = v
		if a, ok := oldApplied[k]; ok {
			applied[k] = a
		}
	}
	return orig, applied
}
