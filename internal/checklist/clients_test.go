package checklist

import (
	"fmt"
	"testing"
)

func conns(n int, ip, lib string, age int64) []ClientConn {
	out := make([]ClientConn, n)
	for i := range out {
		out[i] = ClientConn{ID: fmt.Sprint(i), IP: ip, LibName: lib, Age: age, TotCmds: -1}
	}
	return out
}

func withClients(maxclients string, groups ...[]ClientConn) Facts {
	var cs []ClientConn
	for _, g := range groups {
		cs = append(cs, g...)
	}
	// This audit's own connection is always in the list and is ignored.
	cs = append(cs, ClientConn{IP: "127.0.0.1", Name: AuditClientName, LibName: "valkey", Age: 0})
	return Facts{Valkey: valkeyFacts(sysctls("maxclients", maxclients), nil), Clients: cs}
}

func TestRuleClientsChecked(t *testing.T) {
	runRuleCases(t, ruleClientsChecked, []ruleCase{
		{name: "skipped", id: "clients-not-checked", sev: Info,
			facts: Facts{Valkey: valkeyFacts(nil, nil), ClientsErr: "skipped CLIENT LIST: 9000 connected clients"}, evidence: []string{"9000"}},
		{name: "read", id: "clients-not-checked", none: true, facts: withClients("100")},
		{name: "no valkey", id: "clients-not-checked", none: true, facts: Facts{}},
	})
}

func TestRulePerAddress(t *testing.T) {
	runRuleCases(t, rulePerAddress, []ruleCase{
		{name: "spread", id: "clients-per-address", sev: OK,
			facts:    withClients("10000", conns(20, "10.0.0.1", "go-redis", 3600), conns(20, "10.0.0.2", "", 3600)),
			evidence: []string{"40 clients from 2 addresses", "10.0.0.1: 20 (go-redis ×20)"}},
		{name: "one address hogs", id: "clients-per-address", sev: Warning,
			facts:    withClients("1000", conns(300, "10.0.0.9", "valkey-py", 3600), conns(5, "10.0.0.2", "", 3600)),
			evidence: []string{"10.0.0.9 holds 300 > 250"}},
		{name: "absolute cap", id: "clients-per-address", sev: Warning,
			facts: withClients("100000", conns(1200, "10.0.0.9", "", 3600))},
		{name: "only the audit", id: "clients-per-address", sev: OK, facts: withClients("100")},
		{name: "not read", id: "clients-per-address", none: true, facts: Facts{Valkey: valkeyFacts(nil, nil)}},
	})
}

func TestRuleYoungConnections(t *testing.T) {
	runRuleCases(t, ruleYoungConnections, []ruleCase{
		{name: "churn", id: "clients-young-connections", sev: Warning,
			facts:    withClients("1000", conns(30, "10.0.0.5", "GlideGo", 1), conns(10, "10.0.0.6", "", 9000)),
			evidence: []string{"30 of 40 clients (75%)", "most from 10.0.0.5 (GlideGo ×30)"}},
		{name: "long-lived", id: "clients-young-connections", sev: OK,
			facts: withClients("1000", conns(3, "10.0.0.5", "", 1), conns(30, "10.0.0.6", "", 9000))},
		{name: "too few", id: "clients-young-connections", sev: OK, facts: withClients("1000", conns(3, "10.0.0.5", "", 1))},
	})
}

func TestRuleLibraries(t *testing.T) {
	runRuleCases(t, ruleLibraries, []ruleCase{
		{name: "known", id: "clients-library-no-backoff", sev: Info,
			facts: withClients("1000", conns(3, "10.0.0.5", "GlideGo", 100), conns(2, "10.0.0.6", "go-redis(go-redis,go1.24)", 100),
				conns(1, "10.0.0.7", "valkey", 100)),
			evidence: []string{"GlideGo ×3", "go-redis(go-redis,go1.24) ×2", "valkey ×1: valkey-go redials"}},
		{name: "unknown libs only", id: "clients-library-no-backoff", sev: OK,
			facts: withClients("1000", conns(3, "10.0.0.5", "lettuce", 100), conns(2, "10.0.0.6", "valkey-rs", 100))},
		{name: "audit's own valkey-go connection ignored", id: "clients-library-no-backoff", sev: OK, facts: withClients("1000")},
	})
}
