package defuse

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
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
	trackingDependents() ([]string, error)
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
}

func newKernelState() kernelState {
	return kernelState{Armed: map[string]time.Duration{}, Present: map[string]bool{}, Actions: map[string]Action{}}
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
	_, err := m.locked(ctx, func(st *stateFile) (bool, error) {
		out = append(out, st.Mitigations...)
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

// undo reverses one mitigation.
func (m *Manager) undo(ctx context.Context, mt Mitigation) error {
	switch mt.Action {
	case RatelimitSYN, RatelimitGlobal, Notrack:
		k, err := m.kernel(mt.NetNS)
		if err != nil {
			return err
		}
		defer k.Close()
		return k.remove(map[string]bool{mt.ID: true})
	case AcceptCap:
		if mt.Restore == nil || len(mt.Restore.Config) == 0 {
			return nil
		}
		a, err := m.restoreAddr(mt)
		if err != nil {
			return err
		}
		v, err := dialValkey(ctx, a, mt.NetNS)
		if err != nil {
			return err
		}
		defer v.Close()
		for _, k := range keys(mt.Restore.Config) {
			if err := v.ConfigSet(ctx, k, mt.Restore.Config[k]); err != nil {
				return err
			}
		}
		return nil
	case Backlog:
		if mt.Restore == nil {
			return nil
		}
		var errs []error
		for _, k := range keys(mt.Restore.Sysctls) {
			errs = append(errs, writeSysctl(mt.NetNS, k, mt.Restore.Sysctls[k]))
		}
		return errors.Join(errs...)
	}
	return nil
}

// restoreAddr rebuilds the Valkey address of a recorded mitigation. The
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
	if _, err := ParseAction(string(a)); err != nil {
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
	}
	if a == RatelimitSYN || a == RatelimitGlobal {
		mt.Rate, mt.Burst = p.Rate.String(), p.Burst
	}
	_, err = m.locked(ctx, func(st *stateFile) (bool, error) {
		if err := m.apply(ctx, &mt, p); err != nil {
			return false, err
		}
		if p.DryRun || !mt.Reversible {
			return false, nil
		}
		st.Mitigations = append(st.Mitigations, mt)
		return true, nil
	})
	if err != nil {
		return Mitigation{}, err
	}
	return mt, nil
}

func (m *Manager) apply(ctx context.Context, mt *Mitigation, p Params) error {
	switch mt.Action {
	case RatelimitSYN, RatelimitGlobal, Notrack:
		return m.applyNFT(mt, p)
	case AcceptCap:
		return m.applyAcceptCap(ctx, mt, p)
	case Backlog:
		return m.applyBacklog(ctx, mt, p)
	case KillIdle:
		return m.applyKillIdle(ctx, mt, p)
	}
	return fmt.Errorf("%w: unknown action %q", ErrBadInput, mt.Action)
}

func (m *Manager) applyNFT(mt *Mitigation, p Params) error {
	spec, err := buildNFT(mt.ID, mt.Action, p)
	if err != nil {
		return err
	}
	mt.Changes = spec.render()
	mt.KernelExpiry = true
	switch mt.Action {
	case RatelimitSYN:
		mt.Notes = append(mt.Notes,
			"only connection-opening SYNs are matched; established connections are never cut",
			"clients behind one NAT address share one bucket")
	case RatelimitGlobal:
		mt.Notes = append(mt.Notes,
			"one bucket for all sources: well-behaved clients compete with the storm for the rate",
			"only connection-opening SYNs are matched; established connections are never cut")
	case Notrack:
		mt.Notes = append(mt.Notes,
			"packets of the port are untracked both ways: rules matching ct state see 'untracked'",
			"when the TTL lapses, connections are picked up by conntrack again mid-stream")
	}
	if p.DryRun && mt.Action != Notrack {
		return nil // rendering needs no kernel
	}
	k, err := m.kernel(m.NetNS)
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	defer k.Close()
	if mt.Action == Notrack {
		why, err := notrackBlockers(k, m.NetNS)
		if err != nil {
			return err
		}
		if len(why) > 0 {
			return fmt.Errorf("%w: notrack would break rules that depend on connection tracking: %s", ErrRefused, strings.Join(why, "; "))
		}
	}
	if p.DryRun {
		return nil
	}
	return k.install(spec)
}

// notrackBlockers lists why untracking is unsafe or useless here.
func notrackBlockers(k kernel, ns string) ([]string, error) {
	why, err := k.trackingDependents()
	if err != nil {
		return nil, err
	}
	// Legacy iptables tables are invisible to nftables; their presence
	// is listed per namespace in /proc/net/ip_tables_names.
	for _, f := range []string{"ip_tables_names", "ip6_tables_names"} {
		b, err := readNetFile(ns, f)
		if err != nil {
			continue
		}
		for _, t := range strings.Fields(string(b)) {
			if t == "nat" {
				why = append(why, "legacy iptables has a nat table ("+f+")")
			}
		}
	}
	if _, err := readSysctl(ns, "net.netfilter.nf_conntrack_count"); err != nil {
		why = append(why, "conntrack is not active in this namespace: there is nothing to bypass, and a notrack rule would load it")
	}
	return why, nil
}

const configAcceptCap = "max-new-connections-per-cycle"

func (m *Manager) applyAcceptCap(ctx context.Context, mt *Mitigation, p Params) error {
	mt.Valkey = m.Valkey.HostPort()
	v, err := dialValkey(ctx, m.Valkey, m.NetNS)
	if err != nil {
		return err
	}
	defer v.Close()
	orig, ok, err := v.ConfigGet(ctx, configAcceptCap)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: this server has no %s (Valkey >= 8.0 has it; 7.2 hard-codes 1000 accepts per call)", ErrRefused, configAcceptCap)
	}
	val := strconv.Itoa(p.Value)
	mt.Changes = append(mt.Changes, fmt.Sprintf("CONFIG SET %s %s   # was %s", configAcceptCap, val, orig))
	mt.Restore = &Restore{Config: map[string]string{configAcceptCap: orig}, ValkeyUser: m.Valkey.User, ValkeyTLS: m.Valkey.TLS}
	if n, _ := strconv.Atoi(orig); p.Value < n {
		mt.Notes = append(mt.Notes, "lowering the cap protects established clients' latency but moves the queue into the kernel's accept queue")
	} else {
		mt.Notes = append(mt.Notes, "raising the cap drains the accept queue faster at the cost of main-thread time per event-loop turn")
	}
	mt.Notes = append(mt.Notes, "restored at revert, or at the first stormguard run after the TTL (not by the kernel)")
	if p.DryRun {
		return nil
	}
	return v.ConfigSet(ctx, configAcceptCap, val)
}

func (m *Manager) applyBacklog(ctx context.Context, mt *Mitigation, p Params) error {
	want := map[string]int{sysctlSomaxconn: p.Somaxconn, sysctlSynBacklog: p.SynBacklog}
	restore := map[string]string{}
	for _, k := range keys(want) {
		cur, err := readSysctl(m.NetNS, k)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(cur)
		if err != nil {
			return fmt.Errorf("sysctl %s: unexpected value %q", k, cur)
		}
		if want[k] < n {
			return fmt.Errorf("%w: %s is %d; backlog only raises it (asked %d)", ErrRefused, k, n, want[k])
		}
		if want[k] == n {
			continue
		}
		restore[k] = cur
		mt.Changes = append(mt.Changes, fmt.Sprintf("sysctl -w %s=%d   # was %s", k, want[k], cur))
	}
	if len(restore) == 0 {
		return fmt.Errorf("%w: %s and %s already have the asked values", ErrRefused, sysctlSomaxconn, sysctlSynBacklog)
	}
	mt.Restore = &Restore{Sysctls: restore}
	mt.Notes = append(mt.Notes,
		"Valkey's accept queue is min(tcp-backlog, somaxconn) taken when it calls listen(): it grows only after a Valkey restart, and tcp-backlog (valkey.conf, immutable at runtime) must be raised too",
		"tcp_max_syn_backlog matters only with tcp_syncookies=0; with cookies the listen backlog bounds the SYN queue",
		"restored at revert, or at the first stormguard run after the TTL (not by the kernel)")
	if v, err := dialValkey(ctx, m.Valkey, m.NetNS); err == nil {
		if tb, ok, err := v.ConfigGet(ctx, "tcp-backlog"); err == nil && ok {
			mt.Notes = append(mt.Notes, "Valkey tcp-backlog is "+tb)
		}
		v.Close()
	}
	if p.DryRun {
		return nil
	}
	for _, k := range keys(restore) {
		if err := writeSysctl(m.NetNS, k, strconv.Itoa(want[k])); err != nil {
			// Put back what we already changed.
			for _, r := range keys(restore) {
				_ = writeSysctl(m.NetNS, r, restore[r])
			}
			return err
		}
	}
	return nil
}

func (m *Manager) applyKillIdle(ctx context.Context, mt *Mitigation, p Params) error {
	mt.Valkey = m.Valkey.HostPort()
	mt.Expires = mt.Applied
	mt.Notes = append(mt.Notes,
		"cannot be reverted: killed clients are gone (well-behaved ones reconnect, which is itself new connections)",
		fmt.Sprintf("only normal clients idle for at least %s with no blocking, pub/sub or MULTI state are killed", p.MinIdle))
	v, err := dialValkey(ctx, m.Valkey, m.NetNS)
	if err != nil {
		return err
	}
	defer v.Close()
	info, err := v.Info(ctx, "clients")
	if err != nil {
		return err
	}
	connected, ok := atoi(info, "connected_clients")
	if !ok {
		return errors.New("INFO clients has no connected_clients")
	}
	mc, ok := atoi(info, "maxclients")
	if !ok {
		s, found, err := v.ConfigGet(ctx, "maxclients")
		if err != nil || !found {
			return fmt.Errorf("read maxclients: %w", err)
		}
		mc, _ = strconv.ParseInt(s, 10, 64)
	}
	if mc <= 0 || float64(connected) < p.NearFraction*float64(mc) {
		return fmt.Errorf("%w: %d of maxclients %d connected, below %.0f%%: killing clients would not help", ErrRefused, connected, mc, p.NearFraction*100)
	}
	self, err := v.ClientID(ctx)
	if err != nil {
		return err
	}
	clients, err := v.ClientList(ctx)
	if err != nil {
		return err
	}
	victims := idleVictims(clients, self, p.MinIdle)
	if len(victims) == 0 {
		return fmt.Errorf("%w: no normal client idle for %s or more", ErrRefused, p.MinIdle)
	}
	for _, c := range victims {
		mt.Changes = append(mt.Changes, fmt.Sprintf("CLIENT KILL ID %s   # %s idle %ss", c["id"], c["addr"], c["idle"]))
	}
	if p.DryRun {
		return nil
	}
	for _, c := range victims {
		if err := v.ClientKill(ctx, c["id"]); err != nil {
			return err
		}
	}
	return nil
}

// idleVictims picks clients kill-idle may disconnect: idle at least minIdle,
// not ourselves, not blocked, subscribed, in MULTI, or a replica/master.
func idleVictims(clients []map[string]string, self string, minIdle time.Duration) []map[string]string {
	var out []map[string]string
	for _, c := range clients {
		if c["id"] == "" || c["id"] == self {
			continue
		}
		idle, err := strconv.ParseInt(c["idle"], 10, 64)
		if err != nil || time.Duration(idle)*time.Second < minIdle {
			continue
		}
		if strings.ContainsAny(c["flags"], "bPxSMut") {
			continue
		}
		if v := c["sub"] + c["psub"] + c["ssub"]; strings.Trim(v, "0") != "" {
			continue
		}
		if m := c["multi"]; m != "" && m != "-1" {
			continue
		}
		out = append(out, c)
	}
	return out
}
