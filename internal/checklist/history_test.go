package checklist

import "testing"

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
