package defuse

import (
	"context"
	"errors"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// fakeKernel stands in for nftables in manager logic tests.
type fakeKernel struct {
	ks        kernelState
	installed []nftSpec
	removed   []string
	blockers  []string
}

func (f *fakeKernel) install(spec nftSpec) error {
	f.installed = append(f.installed, spec)
	for _, s := range spec.Sets {
		id := idFromSetName(s.Name)
		f.ks.Present[id] = true
		if s.ElemTimeout > 0 {
			f.ks.Armed[id] = s.ElemTimeout
		}
	}
	return nil
}
func (f *fakeKernel) state() (kernelState, error) { return f.ks, nil }
func (f *fakeKernel) remove(ids map[string]bool) error {
	for id := range ids {
		f.removed = append(f.removed, id)
		delete(f.ks.Present, id)
		delete(f.ks.Armed, id)
	}
	sort.Strings(f.removed)
	return nil
}
func (f *fakeKernel) trackingDependents(int) ([]string, error) { return f.blockers, nil }
func (f *fakeKernel) Close()                                   {}

func newFakeManager(t *testing.T) (*Manager, *fakeKernel, *time.Time) {
	now := time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC)
	fk := &fakeKernel{ks: newKernelState()}
	m := &Manager{
		StatePath:  filepath.Join(t.TempDir(), "defuse.json"),
		Now:        func() time.Time { return now },
		kernelFn:   func(string) (kernel, error) { return fk, nil },
		scheduleFn: func(mt *Mitigation) { mt.RestoreBy = RestoreByNextRun },
	}
	return m, fk, &now
}

func TestManagerLifecycle(t *testing.T) {
	ctx := context.Background()
	m, fk, now := newFakeManager(t)
	p := Params{Port: 6379, TTL: time.Minute, Rate: Rate{20, "second"}}
	mt, err := m.Apply(ctx, RatelimitSYN, p)
	if err != nil {
		t.Fatal(err)
	}
	if !mt.KernelExpiry || !mt.Expires.Equal(now.Add(time.Minute)) || len(fk.installed) != 1 || len(mt.Changes) == 0 {
		t.Fatalf("apply: %+v, installed %d", mt, len(fk.installed))
	}
	dry, err := m.Apply(ctx, RatelimitGlobal, Params{Port: 6379, TTL: time.Minute, Rate: Rate{5, "second"}, DryRun: true})
	if err != nil || !dry.DryRun || len(dry.Changes) == 0 || len(fk.installed) != 1 {
		t.Fatalf("dry run changed the kernel or returned nothing: %+v, %v, installed %d", dry, err, len(fk.installed))
	}
	ls, err := m.List(ctx)
	if err != nil || len(ls) != 1 || ls[0].ID != mt.ID {
		t.Fatalf("list = %+v, %v; want the one mitigation", ls, err)
	}

	// An orphan: rules in the kernel whose arm element lapsed, unknown to
	// the state file. Expire removes it.
	fk.ks.Present["dead0000"] = true
	// An unknown but armed id is listed (the list matches the kernel).
	fk.ks.Present["live0000"], fk.ks.Armed["live0000"], fk.ks.Actions["live0000"] = true, 30*time.Second, Notrack
	ls, err = m.List(ctx)
	if err != nil || len(ls) != 2 || ls[1].ID != "live0000" || ls[1].Action != Notrack || !ls[1].Expires.Equal(now.Add(30*time.Second)) {
		t.Fatalf("list with unknown armed id = %+v, %v", ls, err)
	}
	if len(fk.removed) != 1 || fk.removed[0] != "dead0000" {
		t.Fatalf("removed %v, want the orphan", fk.removed)
	}

	// Kernel lapsed early (clock skew, hand deletion): expired at once.
	delete(fk.ks.Armed, mt.ID)
	exp, err := m.Expire(ctx)
	if err != nil || len(exp) != 1 || exp[0].ID != mt.ID {
		t.Fatalf("expire = %+v, %v", exp, err)
	}

	// TTL over by the clock.
	mt2, err := m.Apply(ctx, RatelimitGlobal, Params{Port: 6379, TTL: 10 * time.Second, Rate: Rate{5, "second"}})
	if err != nil {
		t.Fatal(err)
	}
	*now = now.Add(11 * time.Second)
	ls, _ = m.List(ctx)
	for _, x := range ls {
		if x.ID == mt2.ID {
			t.Fatalf("expired mitigation still listed: %+v", x)
		}
	}

	// Revert by id; unknown id is ErrNotFound.
	mt3, err := m.Apply(ctx, RatelimitGlobal, Params{Port: 6379, TTL: time.Hour, Rate: Rate{5, "second"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.Revert(ctx, mt3.ID); err != nil || got.ID != mt3.ID {
		t.Fatalf("revert = %+v, %v", got, err)
	}
	if _, err := m.Revert(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revert unknown: %v", err)
	}
}

func TestManagerRefusesNotrackWithNAT(t *testing.T) {
	m, fk, _ := newFakeManager(t)
	fk.blockers = []string{"table ip nat chain POSTROUTING is a NAT chain (NAT needs conntrack)"}
	_, err := m.Apply(context.Background(), Notrack, Params{Port: 6379, TTL: time.Minute})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	if len(fk.installed) != 0 {
		t.Fatal("notrack installed despite NAT")
	}
}

func TestManagerBadInput(t *testing.T) {
	m, _, _ := newFakeManager(t)
	for _, tc := range []struct {
		a Action
		p Params
	}{
		{RatelimitSYN, Params{Port: 6379, Rate: Rate{1, "second"}}},
		{Action("bogus"), Params{TTL: time.Second}},
		{KillIdle, Params{TTL: time.Second}},
	} {
		if _, err := m.Apply(context.Background(), tc.a, tc.p); !errors.Is(err, ErrBadInput) {
			t.Errorf("Apply(%s, %+v) = %v, want ErrBadInput", tc.a, tc.p, err)
		}
	}
}
