package checklist

import (
	"context"
	"strings"

	"github.com/stormguard/stormguard/internal/listentrace"
	"reflect"
	"testing"
)

func TestRuleSomaxconn(t *testing.T) {
	vk := valkeyFacts(sysctls("tcp-backlog", "511"), nil)
	runRuleCases(t, ruleSomaxconn, []ruleCase{
		{name: "truncates", id: "somaxconn-truncates-backlog", sev: Warning,
			facts:    Facts{Sysctls: sysctls(sysSomaxconn, "64"), Valkey: vk},
			evidence: []string{"= 64", "tcp-backlog 511", "min(511, 64) = 64"},
			fix:      []string{"sysctl -w net.core.somaxconn=511", "restart Valkey"},
			sysctls:  map[string]string{sysSomaxconn: "511"}},
		{name: "equal", id: "somaxconn-truncates-backlog", sev: OK,
			facts: Facts{Sysctls: sysctls(sysSomaxconn, "511"), Valkey: vk}},
		{name: "larger", id: "somaxconn-truncates-backlog", sev: OK,
			facts: Facts{Sysctls: sysctls(sysSomaxconn, "4096"), Valkey: vk}, evidence: []string{"limit 511"}},
		{name: "valkey unknown assumes default", id: "somaxconn-truncates-backlog", sev: Warning,
			facts: Facts{Sysctls: sysctls(sysSomaxconn, "128")}, evidence: []string{"assumed 511"}},
		{name: "in a namespace", id: "somaxconn-truncates-backlog", sev: Warning,
			facts: Facts{NetNS: "/var/run/netns/blue", Sysctls: sysctls(sysSomaxconn, "128"), Valkey: vk},
			fix:   []string{"nsenter --net=/var/run/netns/blue sysctl -w net.core.somaxconn=511"}},
		{name: "unreadable", id: "somaxconn-truncates-backlog", sev: Info,
			facts:    Facts{SysctlErrs: sysctls(sysSomaxconn, "permission denied")},
			evidence: []string{"permission denied"}},
		{name: "client role", id: "somaxconn-truncates-backlog", none: true,
			facts: Facts{Role: RoleClient, Sysctls: sysctls(sysSomaxconn, "64")}},
	})
}

func TestRuleSyncookies(t *testing.T) {
	runRuleCases(t, ruleSyncookies, []ruleCase{
		{name: "off", id: "syncookies-disabled", sev: Warning, facts: Facts{Sysctls: sysctls(sysSyncookies, "0")},
			fix: []string{"net.ipv4.tcp_syncookies=1"}, sysctls: map[string]string{sysSyncookies: "1"}},
		{name: "on", id: "syncookies-disabled", sev: OK, facts: Facts{Sysctls: sysctls(sysSyncookies, "1")}},
		{name: "always", id: "syncookies-disabled", sev: Info, facts: Facts{Sysctls: sysctls(sysSyncookies, "2")}},
		{name: "unreadable", id: "syncookies-disabled", sev: Info, facts: Facts{}},
		{name: "client", id: "syncookies-disabled", none: true, facts: Facts{Role: RoleClient, Sysctls: sysctls(sysSyncookies, "0")}},
	})
}

func TestRuleMaxSynBacklog(t *testing.T) {
	vk := valkeyFacts(sysctls("tcp-backlog", "511"), nil)
	runRuleCases(t, ruleMaxSynBacklog, []ruleCase{
		{name: "cookies on: irrelevant", id: "syn-backlog-small", none: true,
			facts: Facts{Sysctls: sysctls(sysSyncookies, "1", sysMaxSynBacklog, "128"), Valkey: vk}},
		{name: "cookies off, small", id: "syn-backlog-small", sev: Warning,
			facts:   Facts{Sysctls: sysctls(sysSyncookies, "0", sysMaxSynBacklog, "128"), Valkey: vk},
			sysctls: map[string]string{sysMaxSynBacklog: "1024"}, evidence: []string{"128 < tcp-backlog 511"}},
		{name: "cookies off, enough", id: "syn-backlog-small", sev: OK,
			facts: Facts{Sysctls: sysctls(sysSyncookies, "0", sysMaxSynBacklog, "4096"), Valkey: vk}},
	})
}

func TestRuleAbortOnOverflow(t *testing.T) {
	runRuleCases(t, ruleAbortOnOverflow, []ruleCase{
		{name: "on", id: "abort-on-overflow-enabled", sev: Warning, facts: Facts{Sysctls: sysctls(sysAbortOnOverflow, "1")},
			fix: []string{"tcp_abort_on_overflow=0"}, sysctls: map[string]string{sysAbortOnOverflow: "0"}},
		{name: "off", id: "abort-on-overflow-enabled", sev: OK, facts: Facts{Sysctls: sysctls(sysAbortOnOverflow, "0")}},
		{name: "unreadable", id: "abort-on-overflow-enabled", sev: Info, facts: Facts{}},
	})
}

func TestSynSchedule(t *testing.T) {
	// DOMAIN §1: classic (6 retries) 1,3,7,15,31,63 s, fail 127 s; with
	// tcp_syn_linear_timeouts=4: 1,2,3,4,5,7,11,19,35,67 s, fail 131 s.
	cases := []struct {
		retries, linear int64
		sends           []int64
		giveUp          int64
	}{
		{6, 0, []int64{1, 3, 7, 15, 31, 63}, 127},
		{6, 4, []int64{1, 2, 3, 4, 5, 7, 11, 19, 35, 67}, 131},
		{1, 0, []int64{1}, 3},
		{0, 0, nil, 1},
		{2, 1, []int64{1, 2, 4}, 8},
	}
	for _, c := range cases {
		sends, giveUp := SynSchedule(c.retries, c.linear)
		if !reflect.DeepEqual(sends, c.sends) || giveUp != c.giveUp {
			t.Errorf("SynSchedule(%d, %d) = %v, %d; want %v, %d", c.retries, c.linear, sends, giveUp, c.sends, c.giveUp)
		}
	}
	// RTO is capped at TCP_RTO_MAX.
	sends, _ := SynSchedule(10, 0)
	if d := sends[9] - sends[8]; d != rtoMaxSeconds {
		t.Errorf("10th retransmit gap %d, want capped %d", d, rtoMaxSeconds)
	}
}

func TestRuleSynRetrySchedule(t *testing.T) {
	runRuleCases(t, ruleSynRetrySchedule, []ruleCase{
		{name: "linear", id: "syn-retry-schedule", sev: Info,
			facts:    Facts{Sysctls: sysctls(sysSynRetries, "6", sysSynLinear, "4", sysSynackRetries, "5")},
			evidence: []string{"1, 2, 3, 4, 5, 7, 11, 19, 35, 67 s", "after 131 s", "tcp_synack_retries = 5"}},
		{name: "old kernel", id: "syn-retry-schedule", sev: Info,
			facts:    Facts{Sysctls: sysctls(sysSynRetries, "6")},
			evidence: []string{"absent", "1, 3, 7, 15, 31, 63 s", "after 127 s"}},
		{name: "unreadable", id: "syn-retry-schedule", sev: Info, facts: Facts{}, evidence: []string{"could not be read"}},
	})
}

func TestRulePortRange(t *testing.T) {
	runRuleCases(t, rulePortRange, []ruleCase{
		{name: "default", id: "ephemeral-ports-narrow", sev: OK,
			facts: Facts{Role: RoleClient, Sysctls: sysctls(sysPortRange, "32768\t60999")}, evidence: []string{"28232 ports"}},
		{name: "narrow", id: "ephemeral-ports-narrow", sev: Warning,
			facts:   Facts{Role: RoleClient, Sysctls: sysctls(sysPortRange, "60000 61000")},
			sysctls: map[string]string{sysPortRange: "10240 65535"}},
		{name: "server role", id: "ephemeral-ports-narrow", none: true, facts: Facts{Sysctls: sysctls(sysPortRange, "60000 61000")}},
		{name: "garbage", id: "ephemeral-ports-narrow", sev: Info, facts: Facts{Role: RoleClient, Sysctls: sysctls(sysPortRange, "x")}},
	})
}

func TestRuleTWReuse(t *testing.T) {
	runRuleCases(t, ruleTWReuse, []ruleCase{
		{name: "off", id: "tw-reuse-disabled", sev: Warning, facts: Facts{Role: RoleClient, Sysctls: sysctls(sysTWReuse, "0")}},
		{name: "loopback only", id: "tw-reuse-disabled", sev: Info, facts: Facts{Role: RoleClient, Sysctls: sysctls(sysTWReuse, "2")}},
		{name: "on", id: "tw-reuse-disabled", sev: OK, facts: Facts{Role: RoleClient, Sysctls: sysctls(sysTWReuse, "1")}},
		{name: "server", id: "tw-reuse-disabled", none: true, facts: Facts{Sysctls: sysctls(sysTWReuse, "0")}},
	})
}

func TestRuleEBPF(t *testing.T) {
	runRuleCases(t, ruleEBPF, []ruleCase{
		{name: "loads", id: "ebpf-per-port-signals", sev: OK, facts: Facts{EBPF: &EBPFFacts{}}},
		{name: "turned off", id: "ebpf-per-port-signals", sev: Info,
			facts:    Facts{EBPF: &EBPFFacts{Err: "turned off (STORMGUARD_EBPF=0)"}},
			evidence: []string{"turned off (STORMGUARD_EBPF=0)"}},
		{name: "not probed", id: "ebpf-per-port-signals", none: true, facts: Facts{}},
	})
}

// TestProbeEBPFTurnedOff: with eBPF turned off by the environment, check
// reports why without loading anything (no root needed).
func TestProbeEBPFTurnedOff(t *testing.T) {
	t.Setenv(listentrace.Env, "0")
	f := probeEBPF(context.Background(), "", 6379)
	if f == nil || !strings.Contains(f.Err, "turned off") || !strings.Contains(f.Err, listentrace.Env) {
		t.Fatalf("probeEBPF with %s=0 = %+v, want the reason", listentrace.Env, f)
	}
	fs := ruleEBPF(&Facts{EBPF: f})
	if len(fs) != 1 || fs[0].Severity != Info || !strings.Contains(fs[0].Evidence, "turned off") {
		t.Fatalf("finding = %+v, want one info finding saying eBPF is turned off", fs)
	}
}
