package defuse

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "defuse.json")
	st, err := loadState(path)
	if err != nil || len(st.Mitigations) != 0 {
		t.Fatalf("missing file: %+v, %v", st, err)
	}
	t0 := time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC)
	in := stateFile{Version: 1, Mitigations: []Mitigation{
		{ID: "bbbb", Action: AcceptCap, Port: 6379, Valkey: "127.0.0.1:6379", Applied: t0.Add(time.Second), Expires: t0.Add(time.Minute),
			TTL: "1m0s", Changes: []string{"CONFIG SET max-new-connections-per-cycle 100   # was 10"}, Reversible: true,
			Restore: &Restore{Config: map[string]string{"max-new-connections-per-cycle": "10"}, ValkeyUser: "ops"}},
		{ID: "aaaa", Action: RatelimitSYN, Port: 6379, NetNS: "/var/run/netns/x", Applied: t0, Expires: t0.Add(time.Hour),
			TTL: "1h0m0s", Rate: "20/second", Burst: 40, Changes: []string{"add table inet stormguard"}, KernelExpiry: true, Reversible: true},
		{ID: "cccc", Action: Backlog, Applied: t0.Add(2 * time.Second), Expires: t0.Add(time.Hour), Changes: []string{},
			Restore: &Restore{Sysctls: map[string]string{sysctlSomaxconn: "128"}}, Reversible: true},
	}}
	if err := saveState(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	// Saved sorted by Applied.
	want := []Mitigation{in.Mitigations[1], in.Mitigations[0], in.Mitigations[2]}
	if !reflect.DeepEqual(out.Mitigations, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out.Mitigations, want)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "password") {
		t.Error("state file mentions a password")
	}
	// No temp files left behind.
	ents, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".defuse-") {
			t.Errorf("temp file %s left", e.Name())
		}
	}
}

func TestStateErrors(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"garbage": "{not json", "version": `{"version":7,"mitigations":[]}`} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadState(p); err == nil {
			t.Errorf("%s: loadState accepted %q", name, body)
		}
	}
	p := filepath.Join(dir, "empty")
	_ = os.WriteFile(p, nil, 0o600)
	if st, err := loadState(p); err != nil || st.Version != 1 {
		t.Errorf("empty file: %+v, %v", st, err)
	}
}

func TestLockState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "defuse.json")
	unlock, err := lockState(path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		u2, err := lockState(path)
		if err == nil {
			u2()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("second lock taken while the first is held")
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("second lock never taken after unlock")
	}
}
