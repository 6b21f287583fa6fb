package checklist

import "testing"

func TestRuleConntrackFull(t *testing.T) {
	loaded := func(count, max uint64) ConntrackFacts {
		return ConntrackFacts{Loaded: true, Count: u64(count), Max: u64(max)}
	}
	runRuleCases(t, ruleConntrackFull, []ruleCase{
		{name: "not loaded", id: "conntrack-near-full", sev: OK, facts: Facts{}, evidence: []string{"not loaded"}},
		{name: "unreadable", id: "conntrack-near-full", sev: Info,
			facts: Facts{Conntrack: ConntrackFacts{Err: "permission denied"}}, evidence: []string{"permission denied"}},
		{name: "loaded without numbers", id: "conntrack-near-full", sev: Info, facts: Facts{Conntrack: ConntrackFacts{Loaded: true}}},
		{name: "empty", id: "conntrack-near-full", sev: OK, facts: Facts{Conntrack: loaded(10, 262144)}},
		{name: "75%", id: "conntrack-near-full", sev: Warning, facts: Facts{Conntrack: loaded(750, 1000)},
			evidence: []string{"750 of", "= 1000", "75% full"}, sysctls: map[string]string{sysCTMax: "2000"}},
		{name: "95%", id: "conntrack-near-full", sev: Critical, facts: Facts{Conntrack: loaded(950, 1000)},
			fix: []string{"nf_conntrack_max=2000", "NOTRACK"}},
		{name: "full", id: "conntrack-near-full", sev: Critical, facts: Facts{Conntrack: loaded(1000, 1000)}},
	})
}

func TestRuleConntrackProjected(t *testing.T) {
	ct := ConntrackFacts{Loaded: true, Count: u64(100), Max: u64(65536)}
	counters := func(passive, active, later uint64) (map[string]uint64, map[string]uint64) {
		return map[string]uint64{"Tcp.PassiveOpens": passive, "Tcp.ActiveOpens": active, "Tcp.CurrEstab": 50},
			map[string]uint64{"Tcp.PassiveOpens": passive + later, "Tcp.ActiveOpens": active, "Tcp.CurrEstab": 50}
	}
	calmA, calmB := counters(1000, 10, 5)
	stormA, stormB := counters(1000, 10, 600)
	runRuleCases(t, ruleConntrackProjected, []ruleCase{
		{name: "not loaded", id: "conntrack-projected-fill", none: true, facts: Facts{}},
		{name: "one read", id: "conntrack-projected-fill", sev: Info, facts: Facts{Conntrack: ct, Counters: calmA, Window: second}},
		{name: "calm", id: "conntrack-projected-fill", sev: OK,
			facts:    Facts{Conntrack: ct, Counters: calmA, CountersLater: calmB, Window: second},
			evidence: []string{"5.0 new connections/s", "50 + 5.0 × 120 s = 650", "fills at a sustained 546 new connections/s"}},
		// 600/s × 120 s = 72000 > 65536.
		{name: "churn", id: "conntrack-projected-fill", sev: Warning,
			facts:    Facts{Conntrack: ct, Counters: stormA, CountersLater: stormB, Window: second},
			evidence: []string{"600.0 new connections/s"}},
	})
}

func TestRuleConntrackPort(t *testing.T) {
	yes, no := true, false
	runRuleCases(t, ruleConntrackPort, []ruleCase{
		{name: "tracked", id: "conntrack-tracks-valkey-port", sev: Info,
			facts: Facts{Port: 6379, Conntrack: ConntrackFacts{Loaded: true, PortTracked: &yes}},
			fix:   []string{"tcp dport 6379 notrack", "tcp sport 6379 notrack", "kube-proxy", "ct state untracked"}},
		{name: "untracked", id: "conntrack-tracks-valkey-port", sev: OK,
			facts: Facts{Port: 6379, Conntrack: ConntrackFacts{Loaded: true, PortTracked: &no}}},
		{name: "unknown", id: "conntrack-tracks-valkey-port", sev: Info,
			facts:    Facts{Port: 6379, Conntrack: ConntrackFacts{Loaded: true, PortTrackedErr: "permission denied"}},
			evidence: []string{"permission denied"}},
		{name: "not loaded", id: "conntrack-tracks-valkey-port", none: true, facts: Facts{Port: 6379}},
		{name: "no valkey", id: "conntrack-tracks-valkey-port", none: true, facts: Facts{Conntrack: ConntrackFacts{Loaded: true}}},
	})
}
