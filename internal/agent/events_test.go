package agent

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/checklist"
	"github.com/stormguard/stormguard/internal/defuse"
)

// TestEventJSON pins the JSON of each non-state event: the bytes must
// equal both a literal (the contract's keys) and the map the agent used to
// encode, so key order and omitted keys cannot drift.
func TestEventJSON(t *testing.T) {
	at := time.Date(2026, 12, 2, 5, 30, 0, 123, time.UTC)
	ns := "/proc/42/ns/net"
	empty := ""
	mt := defuse.Mitigation{ID: "m1", Action: "synlimit", Port: 6379, Applied: at, Expires: at, TTL: "5m0s", Changes: []string{"nft add rule"}}
	findings := []checklist.Finding{{ID: "somaxconn", Title: "t", Evidence: "e", Fix: "f"}}
	for _, tc := range []struct {
		name string
		ev   event
		old  map[string]any
		want string
	}{
		{
			name: "target added",
			ev:   TargetEvent{Time: at, Type: "target", Target: "a:6379", Action: "added", Reason: "discovered valkey-server pid 42", NetNS: &ns},
			old:  map[string]any{"time": at, "type": "target", "target": "a:6379", "action": "added", "reason": "discovered valkey-server pid 42", "netns": ns},
			want: `{"action":"added","netns":"/proc/42/ns/net","reason":"discovered valkey-server pid 42","target":"a:6379","time":"2026-12-02T05:30:00.000000123Z","type":"target"}`,
		},
		{
			name: "target added, empty netns",
			ev:   TargetEvent{Time: at, Type: "target", Target: "a:6379", Action: "added", Reason: "r", NetNS: &empty},
			old:  map[string]any{"time": at, "type": "target", "target": "a:6379", "action": "added", "reason": "r", "netns": ""},
			want: `{"action":"added","netns":"","reason":"r","target":"a:6379","time":"2026-12-02T05:30:00.000000123Z","type":"target"}`,
		},
		{
			name: "target removed",
			ev:   TargetEvent{Time: at, Type: "target", Target: "a:6379", Action: "removed", Reason: "server no longer running"},
			old:  map[string]any{"time": at, "type": "target", "target": "a:6379", "action": "removed", "reason": "server no longer running"},
			want: `{"action":"removed","reason":"server no longer running","target":"a:6379","time":"2026-12-02T05:30:00.000000123Z","type":"target"}`,
		},
		{
			name: "checklist, nothing notable",
			ev:   ChecklistEvent{Time: at, Type: "checklist", Target: "a:6379", Reason: "kernel checklist at storm onset"},
			old:  map[string]any{"time": at, "type": "checklist", "target": "a:6379", "reason": "kernel checklist at storm onset", "findings": []checklist.Finding(nil)},
			want: `{"findings":null,"reason":"kernel checklist at storm onset","target":"a:6379","time":"2026-12-02T05:30:00.000000123Z","type":"checklist"}`,
		},
		{
			name: "checklist with findings",
			ev:   ChecklistEvent{Time: at, Type: "checklist", Target: "a:6379", Reason: "r", Findings: findings},
			old:  map[string]any{"time": at, "type": "checklist", "target": "a:6379", "reason": "r", "findings": findings},
		},
		{
			name: "defuse",
			ev:   DefuseEvent{Time: at, Type: "defuse", Target: "a:6379", Action: "armed", Mitigation: mt, Reason: "storm"},
			old:  map[string]any{"time": at, "type": "defuse", "target": "a:6379", "action": "armed", "mitigation": mt, "reason": "storm"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			old, err := json.Marshal(tc.old)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(old) {
				t.Errorf("typed event JSON differs from the map encoding:\n got %s\nwant %s", got, old)
			}
			if tc.want != "" && string(got) != tc.want {
				t.Errorf("JSON:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
