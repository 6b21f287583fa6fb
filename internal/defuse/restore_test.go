package defuse

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestRestoreOne: a restorer handles exactly its own mitigation, and only
// once it is due.
func TestRestoreOne(t *testing.T) {
	ctx := context.Background()
	m, fk, now := newFakeManager(t)
	p := Params{Port: 6379, TTL: time.Minute, Rate: Rate{20, "second"}}
	mine, err := m.Apply(ctx, RatelimitSYN, p)
	if err != nil {
		t.Fatal(err)
	}
	p.TTL = 10 * time.Second
	other, err := m.Apply(ctx, RatelimitGlobal, p) // due before mine
	if err != nil {
		t.Fatal(err)
	}
	// A mitigation in a namespace that no longer exists.
	gone := Mitigation{ID: "g0ne0000", Action: Backlog, NetNS: filepath.Join(t.TempDir(), "no-such-netns"),
		Applied: *now, Expires: now.Add(time.Second), Restore: &Restore{Sysctls: map[string]string{sysctlSomaxconn: "128"}}}
	if _, err := m.locked(ctx, func(st *stateFile) (bool, error) {
		st.Mitigations = append(st.Mitigations, gone)
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}

	later, err := m.restoreOne(ctx, mine.ID, "")
	if err != nil || !later.Equal(mine.Expires) || len(fk.removed) != 0 {
		t.Fatalf("before the TTL: restoreOne = %v, %v, removed %v; want the expiry and nothing done", later, err, fk.removed)
	}
	*now = now.Add(time.Hour) // all three are due
	if later, err = m.restoreOne(ctx, mine.ID, ""); err != nil || !later.IsZero() {
		t.Fatalf("at the TTL: restoreOne = %v, %v", later, err)
	}
	st, err := loadState(m.StatePath)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.find(mine.ID); ok || len(fk.removed) != 1 || fk.removed[0] != mine.ID {
		t.Fatalf("after restoreOne(%s): state %+v, removed %v; want only its entry and its objects gone", mine.ID, st.Mitigations, fk.removed)
	}
	if _, ok := st.find(other.ID); !ok {
		t.Fatalf("restoreOne(%s) touched %s, which has its own restorer", mine.ID, other.ID)
	}
	// The namespace is gone: the entry is dropped, nothing undone.
	if _, err := m.restoreOne(ctx, gone.ID, ""); err != nil {
		t.Fatal(err)
	}
	if st, _ = loadState(m.StatePath); len(st.Mitigations) != 1 || len(fk.removed) != 1 {
		t.Fatalf("after the gone namespace's restore: state %+v, removed %v", st.Mitigations, fk.removed)
	}
	// An entry that is gone already (reverted): nothing to do.
	if later, err := m.restoreOne(ctx, mine.ID, ""); err != nil || !later.IsZero() {
		t.Fatalf("restoreOne of a removed entry = %v, %v", later, err)
	}
}

// TestSleepUntil: it never returns before the wall-clock instant, returns
// at once for a past one, and gives up when its context ends.
func TestSleepUntil(t *testing.T) {
	at := time.Now().Add(30 * time.Millisecond)
	if err := sleepUntil(context.Background(), at); err != nil {
		t.Fatal(err)
	}
	if now := time.Now(); now.Before(at) {
		t.Fatalf("woke %s before the deadline", at.Sub(now))
	}
	if err := sleepUntil(context.Background(), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sleepUntil(ctx, time.Now().Add(time.Hour)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
