package checklist

import (
	"strings"
	"testing"
	"time"
)

func TestRuleListenOverflows(t *testing.T) {
	c := func(v uint64) map[string]uint64 { return map[string]uint64{"TcpExt.ListenOverflows": v} }
	runRuleCases(t, ruleListenOverflows, []ruleCase{
		{name: "none", id: "listen-overflows-seen", sev: OK, facts: Facts{Counters: c(0)}},
		{name: "past", id: "listen-overflows-seen", sev: Warning, facts: Facts{Counters: c(17), CountersLater: c(17), Window: second},
			evidence: []string{"ListenOverflows = 17", "not only Valkey's port"}},
		{name: "now", id: "listen-overflows-seen", sev: Critical, facts: Facts{Counters: c(17), CountersLater: c(40), Window: second},
			evidence: []string{"+23 during"}},
		{name: "namespace named", id: "listen-overflows-seen", sev: Warning, facts: Facts{NetNS: "/run/netns/x", Counters: c(1)},
			evidence: []string{"namespace /run/netns/x"}},
		{name: "unreadable", id: "listen-overflows-seen", sev: Info, facts: Facts{CountersErr: "read TCP counters: permission denied"},
			evidence: []string{"permission denied"}},
		{name: "client", id: "listen-overflows-seen", none: true, facts: Facts{Role: RoleClient, Counters: c(5)}},
	})
}

func TestRuleSynDrops(t *testing.T) {
	c := func(drops, ov, full uint64) map[string]uint64 {
		return map[string]uint64{"TcpExt.ListenDrops": drops, "TcpExt.ListenOverflows": ov, "TcpExt.TCPReqQFullDrop": full}
	}
	runRuleCases(t, ruleSynDrops, []ruleCase{
		{name: "none", id: "syn-drops-seen", sev: OK, facts: Facts{Counters: c(5, 5, 0)}},
		{name: "other drops", id: "syn-drops-seen", sev: Warning, facts: Facts{Counters: c(9, 5, 0)}, evidence: []string{"= 4 other"}},
		{name: "reqq full", id: "syn-drops-seen", sev: Warning, facts: Facts{Counters: c(5, 5, 3)}, evidence: []string{"TCPReqQFullDrop 3"}},
		{name: "unreadable", id: "syn-drops-seen", none: true, facts: Facts{}},
	})
}

func TestRuleRejected(t *testing.T) {
	v := func(a, b string) *ValkeyFacts {
		vf := valkeyFacts(nil, sysctls("rejected_connections", a))
		if b != "" {
			vf.InfoLater = sysctls("rejected_connections", b)
		}
		return vf
	}
	runRuleCases(t, ruleRejected, []ruleCase{
		{name: "none", id: "rejected-connections-seen", sev: OK, facts: Facts{Valkey: v("0", "0")}},
		{name: "past", id: "rejected-connections-seen", sev: Warning, facts: Facts{Valkey: v("2", "2")}, evidence: []string{"rejected_connections 2"}},
		{name: "now", id: "rejected-connections-seen", sev: Critical, facts: Facts{Valkey: v("2", "50"), Window: second}, evidence: []string{"+48"}},
		{name: "restart resets", id: "rejected-connections-seen", sev: Warning, facts: Facts{Valkey: v("9", "1")}},
		{name: "no valkey", id: "rejected-connections-seen", none: true, facts: Facts{}},
	})
}

func TestRuleEvicted(t *testing.T) {
	runRuleCases(t, ruleEvicted, []ruleCase{
		{name: "none", id: "evicted-clients-seen", sev: OK, facts: Facts{Valkey: valkeyFacts(nil, sysctls("evicted_clients", "0"))}},
		{name: "some", id: "evicted-clients-seen", sev: Info, facts: Facts{Valkey: valkeyFacts(nil, sysctls("evicted_clients", "3"))}},
		{name: "old server", id: "evicted-clients-seen", none: true, facts: Facts{Valkey: valkeyFacts(nil, nil)}},
	})
}

func TestRejectedAtMaxclients(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	refused := "cannot connect to 127.0.0.1:6379: ERR max number of clients reached"
	at := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		agent *AgentFacts
		want  []string
	}{
		{"no agent asked", nil, []string{"check's own connection was refused just now: " + refused}},
		{"agent down", &AgentFacts{URL: "http://127.0.0.1:9877/api/v1/state", Err: "no agent answered: refused"},
			[]string{"refused just now", "no counters from a stormguard agent (http://127.0.0.1:9877/api/v1/state: no agent answered: refused)"}},
		{"agent counters", &AgentFacts{URL: "http://a/api/v1/state", SampleTime: at, Rejected: u(42), Connected: u(10), MaxClients: u(10)},
			[]string{"refused just now", "the stormguard agent at http://a/api/v1/state, sample taken 2026-12-02T05:00:00Z: rejected_connections 42 since start, connected_clients 10 of maxclients 10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := ruleRejected(&Facts{ValkeyErr: refused, Agent: tt.agent})
			if len(fs) != 1 || fs[0].ID != "rejected-connections-seen" || fs[0].Severity != Critical {
				t.Fatalf("findings %+v; want one critical rejected-connections-seen", fs)
			}
			for _, w := range tt.want {
				if !strings.Contains(fs[0].Evidence, w) {
					t.Errorf("evidence %q lacks %q", fs[0].Evidence, w)
				}
			}
		})
	}
}
