package checklist

import "testing"

func TestRuleNICAllowance(t *testing.T) {
	nic := func(kv map[string]uint64) *NICFacts { return &NICFacts{Interfaces: []string{"ens5"}, Stats: kv} }
	runRuleCases(t, ruleNICAllowance, []ruleCase{
		{name: "not ENA", id: "nic-allowance-exceeded", sev: Info, facts: Facts{NICErr: "not available: none of eth0 exposes ENA allowance counters"},
			evidence: []string{"none of eth0"}},
		{name: "clean", id: "nic-allowance-exceeded", sev: OK,
			facts: Facts{NIC: nic(map[string]uint64{"pps_allowance_exceeded": 0, "conntrack_allowance_exceeded": 0, "conntrack_allowance_available": 99999})}},
		{name: "conntrack exceeded", id: "nic-allowance-exceeded", sev: Warning,
			facts:    Facts{NIC: nic(map[string]uint64{"pps_allowance_exceeded": 0, "conntrack_allowance_exceeded": 12})},
			evidence: []string{"conntrack_allowance_exceeded 12 on ens5"}},
		{name: "bw exceeded", id: "nic-allowance-exceeded", sev: Warning,
			facts: Facts{NIC: nic(map[string]uint64{"bw_in_allowance_exceeded": 1})}},
	})
}

func TestRuleNICConntrackAvailable(t *testing.T) {
	nic := func(v uint64) *NICFacts {
		return &NICFacts{Interfaces: []string{"ens5"}, Stats: map[string]uint64{"conntrack_allowance_available": v}}
	}
	runRuleCases(t, ruleNICConntrackAvailable, []ruleCase{
		{name: "plenty", id: "nic-conntrack-allowance-low", sev: OK, facts: Facts{NIC: nic(500000)}},
		{name: "low", id: "nic-conntrack-allowance-low", sev: Warning, facts: Facts{NIC: nic(120)}, evidence: []string{"conntrack_allowance_available 120"}},
		{name: "old driver", id: "nic-conntrack-allowance-low", none: true, facts: Facts{NIC: &NICFacts{Stats: map[string]uint64{}}}},
		{name: "no NIC", id: "nic-conntrack-allowance-low", none: true, facts: Facts{}},
	})
}
