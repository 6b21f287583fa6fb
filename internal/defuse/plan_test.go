package defuse

import (
	"strings"
	"testing"
)

func i64(v int64) *int64     { return &v }
func f64(v float64) *float64 { return &v }
func actions(p Plan) []Action {
	var out []Action
	for _, x := range p.Proposals {
		out = append(out, x.Action)
	}
	return out
}

func TestPropose(t *testing.T) {
	tests := []struct {
		name    string
		s       Snapshot
		verdict string
		want    []Action
	}{
		{name: "calm", s: Snapshot{Port: 6379, ListenOverflowsPerSec: f64(0), AcceptDepth: i64(0), AcceptLimit: i64(511),
			ConnectedClients: i64(10), MaxClients: i64(10000), RejectedPerSec: f64(0), AcceptCap: i64(10)},
			verdict: "calm"},
		{name: "nothing known", s: Snapshot{Port: 6379}, verdict: "calm"},
		{name: "accept overflow, small backlog, low cap", s: Snapshot{Port: 6379, ListenOverflowsPerSec: f64(300), AcceptDepth: i64(129), AcceptLimit: i64(128),
			ConnectedClients: i64(50), MaxClients: i64(10000), AcceptCap: i64(10), TCPBacklog: i64(511)},
			verdict: "storm", want: []Action{RatelimitSYN, AcceptCap, RatelimitGlobal, Backlog}},
		{name: "queue full, cap already high, big backlog", s: Snapshot{Port: 6379, AcceptDepth: i64(4096), AcceptLimit: i64(4096), AcceptCap: i64(1000)},
			verdict: "storm", want: []Action{RatelimitSYN, RatelimitGlobal}},
		{name: "maxclients only", s: Snapshot{Port: 6379, ListenOverflowsPerSec: f64(0), ConnectedClients: i64(9990), MaxClients: i64(10000), RejectedPerSec: f64(12)},
			verdict: "storm", want: []Action{KillIdle}},
		{name: "conntrack full and overflow", s: Snapshot{Port: 6379, ListenOverflowsPerSec: f64(5), ConntrackCount: i64(65000), ConntrackMax: i64(65536), AcceptLimit: i64(4096), AcceptDepth: i64(1)},
			verdict: "storm", want: []Action{RatelimitSYN, RatelimitGlobal, Notrack}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Propose(tt.s, PlanTarget{NetNS: "/var/run/netns/blue", Valkey: "10.0.0.5:6379", TTL: "120s"})
			if p.Verdict != tt.verdict {
				t.Errorf("verdict %s, want %s", p.Verdict, tt.verdict)
			}
			got := actions(p)
			if strings.Join(toStrings(got), ",") != strings.Join(toStrings(tt.want), ",") {
				t.Fatalf("actions %v, want %v", got, tt.want)
			}
			for i, pr := range p.Proposals {
				if pr.Order != i+1 || pr.Why == "" || pr.Effect == "" || pr.Risk == "" {
					t.Errorf("proposal %d incomplete: %+v", i, pr)
				}
				c := pr.Command
				if !strings.HasPrefix(c, "stormguard defuse apply --action "+string(pr.Action)) || !strings.Contains(c, "--ttl 120s") ||
					!strings.Contains(c, "--netns /var/run/netns/blue") {
					t.Errorf("command %q lacks action, ttl or netns", c)
				}
				if pr.Action.nft() != strings.Contains(c, "--port 6379") {
					t.Errorf("command %q: port flag wrong for %s", c, pr.Action)
				}
				if pr.Action == KillIdle && !strings.Contains(c, "--yes-kill") {
					t.Errorf("kill-idle command %q lacks --yes-kill", c)
				}
			}
		})
	}
}

func toStrings(as []Action) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = string(a)
	}
	return out
}
