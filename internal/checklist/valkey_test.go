package checklist

import "testing"

func TestRuleValkeyChecked(t *testing.T) {
	runRuleCases(t, ruleValkeyChecked, []ruleCase{
		{name: "no address", id: "valkey-not-checked", sev: Info, facts: Facts{}, evidence: []string{"no --valkey"}},
		{name: "unreachable", id: "valkey-not-checked", sev: Info,
			facts: Facts{ValkeyErr: "cannot connect: connection refused"}, evidence: []string{"connection refused"}},
		{name: "checked", id: "valkey-not-checked", none: true, facts: Facts{Valkey: valkeyFacts(nil, nil)}},
		{name: "config forbidden", id: "valkey-config-not-read", sev: Info,
			facts: Facts{Valkey: &ValkeyFacts{ConfigErr: "CONFIG GET failed: NOPERM"}}, evidence: []string{"NOPERM"}},
	})
}

func TestRuleValkeyVersion(t *testing.T) {
	runRuleCases(t, ruleValkeyVersion, []ruleCase{
		{name: "valkey 8", id: "valkey-version", sev: OK,
			facts:    Facts{Valkey: valkeyFacts(nil, sysctls("server_name", "valkey", "valkey_version", "8.0.1", "redis_version", "7.2.4"))},
			evidence: []string{"Valkey 8.0.1"}},
		{name: "valkey 7.2", id: "valkey-version", sev: Info,
			facts:    Facts{Valkey: valkeyFacts(nil, sysctls("server_name", "valkey", "redis_version", "7.2.5"))},
			evidence: []string{"1000 accepts per call"}, fix: []string{">= 8.0"}},
		{name: "redis", id: "valkey-version", sev: Info,
			facts: Facts{Valkey: valkeyFacts(nil, sysctls("redis_version", "7.4.0"))}, evidence: []string{"Redis 7.4.0"}},
		{name: "no valkey", id: "valkey-version", none: true, facts: Facts{}},
	})
}

func TestRuleTCPBacklogSmall(t *testing.T) {
	runRuleCases(t, ruleTCPBacklogSmall, []ruleCase{
		{name: "small", id: "tcp-backlog-small", sev: Info, facts: Facts{Valkey: valkeyFacts(sysctls("tcp-backlog", "128"), nil)}},
		{name: "default", id: "tcp-backlog-small", sev: OK, facts: Facts{Valkey: valkeyFacts(sysctls("tcp-backlog", "511"), nil)}},
		{name: "unknown", id: "tcp-backlog-small", none: true, facts: Facts{Valkey: valkeyFacts(nil, nil)}},
	})
}

func TestRuleClientsNearMax(t *testing.T) {
	vk := func(connected, cluster, max string) *ValkeyFacts {
		info := sysctls("connected_clients", connected)
		if cluster != "" {
			info["cluster_connections"] = cluster
		}
		return valkeyFacts(sysctls("maxclients", max), info)
	}
	runRuleCases(t, ruleClientsNearMax, []ruleCase{
		{name: "low", id: "clients-near-maxclients", sev: OK, facts: Facts{Valkey: vk("10", "", "10000")}},
		{name: "80%", id: "clients-near-maxclients", sev: Warning, facts: Facts{Valkey: vk("8", "", "10")},
			evidence: []string{"connected_clients 8 of maxclients 10 (80%"}, fix: []string{"CONFIG SET maxclients 20"}},
		{name: "full", id: "clients-near-maxclients", sev: Critical, facts: Facts{Valkey: vk("10", "", "10")}},
		{name: "cluster connections count", id: "clients-near-maxclients", sev: Critical,
			facts: Facts{Valkey: vk("80", "15", "100")}, evidence: []string{"+ cluster_connections 15"}},
		{name: "refused at maxclients", id: "clients-near-maxclients", sev: Critical,
			facts: Facts{ValkeyErr: `cannot connect: EOF (the server greets new connections with "ERR max number of clients reached")`}},
		{name: "unreachable", id: "clients-near-maxclients", none: true, facts: Facts{ValkeyErr: "connection refused"}},
		{name: "missing fields", id: "clients-near-maxclients", sev: Info, facts: Facts{Valkey: valkeyFacts(nil, nil)}},
	})
}

func TestRuleFDLimit(t *testing.T) {
	vk := valkeyFacts(sysctls("maxclients", "10000"), nil)
	reduced := valkeyFacts(sysctls("maxclients", "96"), nil)
	proc := func(n uint64) ProcessFacts {
		return ProcessFacts{PID: 42, Via: "listening socket", MaxOpenFiles: u64(n)}
	}
	runRuleCases(t, ruleFDLimit, []ruleCase{
		{name: "enough", id: "fd-limit-below-maxclients", sev: OK, facts: Facts{Valkey: vk, Process: proc(65536)},
			evidence: []string{"Max open files 65536 for pid 42"}},
		{name: "unlimited", id: "fd-limit-below-maxclients", sev: OK, facts: Facts{Valkey: vk, Process: proc(Unlimited)},
			evidence: []string{"unlimited"}},
		{name: "below", id: "fd-limit-below-maxclients", sev: Critical, facts: Facts{Valkey: vk, Process: proc(4096)},
			evidence: []string{"4096", "maxclients 10000 + 32", "EMFILE"}, fix: []string{"LimitNOFILE=10032"}},
		{name: "reduced at startup", id: "fd-limit-below-maxclients", sev: Warning, facts: Facts{Valkey: reduced, Process: proc(128)},
			evidence: []string{"reduced maxclients", "96"}},
		{name: "exactly enough for the default", id: "fd-limit-below-maxclients", sev: OK, facts: Facts{Valkey: vk, Process: proc(10032)}},
		{name: "process not found", id: "fd-limit-below-maxclients", sev: Info,
			facts: Facts{Valkey: vk, Process: ProcessFacts{Err: "Valkey's process not found: needs root"}}, evidence: []string{"needs root"}},
		{name: "no valkey", id: "fd-limit-below-maxclients", none: true, facts: Facts{Process: proc(10)}},
	})
}

func TestRuleIdleTimeout(t *testing.T) {
	runRuleCases(t, ruleIdleTimeout, []ruleCase{
		{name: "off", id: "idle-timeout-disabled", sev: Info, facts: Facts{Valkey: valkeyFacts(sysctls("timeout", "0"), nil)}},
		{name: "on", id: "idle-timeout-disabled", sev: OK, facts: Facts{Valkey: valkeyFacts(sysctls("timeout", "300"), nil)}},
		{name: "unknown", id: "idle-timeout-disabled", none: true, facts: Facts{}},
	})
}

func TestRuleKeepalive(t *testing.T) {
	runRuleCases(t, ruleKeepalive, []ruleCase{
		{name: "off", id: "tcp-keepalive-disabled", sev: Warning, facts: Facts{Valkey: valkeyFacts(sysctls("tcp-keepalive", "0"), nil)},
			fix: []string{"CONFIG SET tcp-keepalive 300"}},
		{name: "slow", id: "tcp-keepalive-disabled", sev: Info, facts: Facts{Valkey: valkeyFacts(sysctls("tcp-keepalive", "7200"), nil)}},
		{name: "default", id: "tcp-keepalive-disabled", sev: OK, facts: Facts{Valkey: valkeyFacts(sysctls("tcp-keepalive", "300"), nil)}},
	})
}

func TestRuleAcceptCap(t *testing.T) {
	runRuleCases(t, ruleAcceptCap, []ruleCase{
		{name: "defaults", id: "accept-cap-per-cycle", sev: OK,
			facts: Facts{Valkey: valkeyFacts(sysctls("max-new-connections-per-cycle", "10", "max-new-tls-connections-per-cycle", "1"), nil)}},
		{name: "raised", id: "accept-cap-per-cycle", sev: Info,
			facts: Facts{Valkey: valkeyFacts(sysctls("max-new-connections-per-cycle", "1000"), nil)}, evidence: []string{"1000"}},
		{name: "tls raised", id: "accept-cap-per-cycle", sev: Info,
			facts: Facts{Valkey: valkeyFacts(sysctls("max-new-connections-per-cycle", "10", "max-new-tls-connections-per-cycle", "50"), nil)}},
		{name: "7.2 has none", id: "accept-cap-per-cycle", none: true, facts: Facts{Valkey: valkeyFacts(nil, nil)}},
	})
}

func TestRuleTLSThreads(t *testing.T) {
	v := func(tlsPort, io, ver string) *ValkeyFacts {
		return valkeyFacts(sysctls("tls-port", tlsPort, "io-threads", io), sysctls("server_name", "valkey", "valkey_version", ver))
	}
	runRuleCases(t, ruleTLSThreads, []ruleCase{
		{name: "no tls", id: "tls-handshakes-on-main-thread", none: true, facts: Facts{Valkey: v("0", "1", "8.1.0")}},
		{name: "tls main thread", id: "tls-handshakes-on-main-thread", sev: Warning, facts: Facts{Valkey: v("6380", "1", "8.1.0")},
			fix: []string{"io-threads 4"}},
		{name: "tls threads old", id: "tls-handshakes-on-main-thread", sev: Info, facts: Facts{Valkey: v("6380", "4", "8.0.1")}},
		{name: "tls offloaded", id: "tls-handshakes-on-main-thread", sev: OK, facts: Facts{Valkey: v("6380", "4", "8.1.1")}},
		{name: "tls by address", id: "tls-handshakes-on-main-thread", sev: Warning,
			facts: Facts{Valkey: &ValkeyFacts{TLS: true, Config: sysctls("io-threads", "1"), Info: map[string]string{}}}},
	})
}

func TestVersionAtLeast(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{{"8.0.1", true}, {"8.1.0", true}, {"9.0.0", true}, {"7.2.5", false}, {"", false}, {"x.y", false}, {"8", false}} {
		if got := versionAtLeast(c.v, 8, 0); got != c.want {
			t.Errorf("versionAtLeast(%q, 8, 0) = %v", c.v, got)
		}
	}
}
