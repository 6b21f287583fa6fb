package checklist

import (
	"fmt"
	"strconv"
	"strings"
)

// Sysctl names used by the kernel rules.
const (
	sysSomaxconn       = "net.core.somaxconn"
	sysSyncookies      = "net.ipv4.tcp_syncookies"
	sysMaxSynBacklog   = "net.ipv4.tcp_max_syn_backlog"
	sysAbortOnOverflow = "net.ipv4.tcp_abort_on_overflow"
	sysSynRetries      = "net.ipv4.tcp_syn_retries"
	sysSynackRetries   = "net.ipv4.tcp_synack_retries"
	sysSynLinear       = "net.ipv4.tcp_syn_linear_timeouts"
	sysPortRange       = "net.ipv4.ip_local_port_range"
	sysTWReuse         = "net.ipv4.tcp_tw_reuse"
)

// KernelSysctls lists the sysctls Gather reads, all per network namespace.
var KernelSysctls = []string{
	sysSomaxconn, sysSyncookies, sysMaxSynBacklog, sysAbortOnOverflow,
	sysSynRetries, sysSynackRetries, sysSynLinear, sysPortRange, sysTWReuse,
}

// defaultTCPBacklog is Valkey's default tcp-backlog.
const defaultTCPBacklog = 511

func kernelRules() []Rule {
	return []Rule{ruleSomaxconn, ruleSyncookies, ruleMaxSynBacklog, ruleAbortOnOverflow,
		ruleSynRetrySchedule, rulePortRange, ruleTWReuse, ruleEBPF}
}

// ruleEBPF says whether watch will have the eBPF per-port signals
// (accept wait, SYN rate, this listener's overflows).
func ruleEBPF(f *Facts) []Finding {
	const id = "ebpf-per-port-signals"
	if f.EBPF == nil {
		return nil
	}
	if f.EBPF.Err != "" {
		return []Finding{newFinding(AreaKernel, id, Info, "eBPF per-port signals are unavailable",
			f.EBPF.Err, "run stormguard as root (or with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN) on a kernel with BTF (5.13 or later); every other signal works without it")}
	}
	return []Finding{newFinding(AreaKernel, id, OK, "eBPF per-port signals load (accept wait, SYN rate, this listener's overflows)", "the programs loaded and attached for the port, and were removed again", "")}
}

// sysctlFix is the command that sets name=value where the facts came from.
func sysctlFix(f *Facts, name, value string) string {
	cmd := "sysctl -w " + name + "=" + value
	if f.NetNS != "" {
		cmd = "nsenter --net=" + f.NetNS + " " + cmd
	}
	return cmd
}

// tcpBacklog is Valkey's tcp-backlog and where it came from.
func tcpBacklog(f *Facts) (int64, string) {
	if n, ok := f.Valkey.configInt("tcp-backlog"); ok {
		return n, fmt.Sprintf("tcp-backlog %d (CONFIG GET)", n)
	}
	return defaultTCPBacklog, fmt.Sprintf("tcp-backlog assumed %d (Valkey default; Valkey not checked)", defaultTCPBacklog)
}

func unreadable(area Area, id, title string, f *Facts, name string) []Finding {
	return []Finding{newFinding(area, id, Info, title+": not checked",
		fmt.Sprintf("%s could not be read: %s", name, f.sysctlWhyNot(name)), "")}
}

func ruleSomaxconn(f *Facts) []Finding {
	const id, title = "somaxconn-truncates-backlog", "somaxconn silently truncates Valkey's tcp-backlog"
	if f.Role == RoleClient {
		return nil
	}
	som, ok := f.sysctl(sysSomaxconn)
	if !ok {
		return unreadable(AreaKernel, id, title, f, sysSomaxconn)
	}
	bl, src := tcpBacklog(f)
	if som < bl {
		fd := newFinding(AreaKernel, id, Warning, title,
			fmt.Sprintf("%s = %d < %s: the accept queue holds only min(%d, %d) = %d connections", sysSomaxconn, som, src, bl, som, som),
			sysctlFix(f, sysSomaxconn, strconv.FormatInt(bl, 10))+", then restart Valkey (listen() fixes the backlog at startup)")
		fd.Sysctls = map[string]string{sysSomaxconn: strconv.FormatInt(bl, 10)}
		return []Finding{fd}
	}
	return []Finding{newFinding(AreaKernel, id, OK, "somaxconn does not truncate tcp-backlog",
		fmt.Sprintf("%s = %d >= %s: accept queue limit %d", sysSomaxconn, som, src, bl), "")}
}

func ruleSyncookies(f *Facts) []Finding {
	const id = "syncookies-disabled"
	if f.Role == RoleClient {
		return nil
	}
	v, ok := f.sysctl(sysSyncookies)
	if !ok {
		return unreadable(AreaKernel, id, "SYN cookies", f, sysSyncookies)
	}
	switch v {
	case 0:
		fd := newFinding(AreaKernel, id, Warning, "SYN cookies are disabled",
			fmt.Sprintf("%s = 0: when the SYN queue fills, new SYNs are dropped (TCPReqQFullDrop) and clients wait out SYN retransmit timeouts", sysSyncookies),
			sysctlFix(f, sysSyncookies, "1"))
		fd.Sysctls = map[string]string{sysSyncookies: "1"}
		return []Finding{fd}
	case 2:
		return []Finding{newFinding(AreaKernel, id, Info, "SYN cookies are always on",
			fmt.Sprintf("%s = 2: every SYN is answered with a cookie, even when the SYN queue is not full", sysSyncookies),
			sysctlFix(f, sysSyncookies, "1")+" (cookies only when the SYN queue overflows)")}
	}
	return []Finding{newFinding(AreaKernel, id, OK, "SYN cookies are enabled",
		fmt.Sprintf("%s = %d", sysSyncookies, v), "")}
}

func ruleMaxSynBacklog(f *Facts) []Finding {
	const id = "syn-backlog-small"
	if f.Role == RoleClient {
		return nil
	}
	cookies, ok := f.sysctl(sysSyncookies)
	if !ok || cookies != 0 {
		// With cookies on the listen backlog bounds the SYN queue
		// (DOMAIN §8.3); tcp_max_syn_backlog does not matter.
		return nil
	}
	v, ok := f.sysctl(sysMaxSynBacklog)
	if !ok {
		return unreadable(AreaKernel, id, "tcp_max_syn_backlog", f, sysMaxSynBacklog)
	}
	bl, src := tcpBacklog(f)
	// With cookies off, SYNs from unproven peers are dropped once less than
	// a quarter of tcp_max_syn_backlog is free, so it needs headroom above
	// the listen backlog.
	if v < bl {
		want := strconv.FormatInt(max(bl*2, 1024), 10)
		fd := newFinding(AreaKernel, id, Warning, "SYN queue limit is below the listen backlog (cookies off)",
			fmt.Sprintf("%s = %d < %s with %s = 0", sysMaxSynBacklog, v, src, sysSyncookies),
			sysctlFix(f, sysMaxSynBacklog, want)+" (or enable SYN cookies)")
		fd.Sysctls = map[string]string{sysMaxSynBacklog: want}
		return []Finding{fd}
	}
	return []Finding{newFinding(AreaKernel, id, OK, "SYN queue limit covers the listen backlog",
		fmt.Sprintf("%s = %d >= %s", sysMaxSynBacklog, v, src), "")}
}

func ruleAbortOnOverflow(f *Facts) []Finding {
	const id = "abort-on-overflow-enabled"
	if f.Role == RoleClient {
		return nil
	}
	v, ok := f.sysctl(sysAbortOnOverflow)
	if !ok {
		return unreadable(AreaKernel, id, "tcp_abort_on_overflow", f, sysAbortOnOverflow)
	}
	if v != 0 {
		fd := newFinding(AreaKernel, id, Warning, "accept-queue overflow resets clients",
			fmt.Sprintf("%s = %d: a full accept queue answers with RST, so clients fail at once and redial instead of retrying the handshake", sysAbortOnOverflow, v),
			sysctlFix(f, sysAbortOnOverflow, "0"))
		fd.Sysctls = map[string]string{sysAbortOnOverflow: "0"}
		return []Finding{fd}
	}
	return []Finding{newFinding(AreaKernel, id, OK, "accept-queue overflow drops silently",
		fmt.Sprintf("%s = 0", sysAbortOnOverflow), "")}
}

// rtoMaxSeconds is TCP_RTO_MAX.
const rtoMaxSeconds = 120

// SynSchedule is when a client retransmits its SYN (seconds after the
// first SYN) and when connect() gives up, for the given sysctls: the first
// linear+1 timeouts are 1 s, then they double (kernel ≥6.5 adds the linear
// count to the retries for SYN_SENT).
func SynSchedule(retries, linear int64) (sends []int64, giveUp int64) {
	retries, linear = max(retries, 0), max(linear, 0)
	total := retries + linear
	var t int64
	rto := func(k int64) int64 { // RTO before retransmit k (1-based)
		if k <= linear+1 {
			return 1
		}
		e := k - linear - 1
		if e > 7 {
			return rtoMaxSeconds
		}
		return min(int64(1)<<e, rtoMaxSeconds)
	}
	for k := int64(1); k <= total && k <= 64; k++ {
		t += rto(k)
		sends = append(sends, t)
	}
	return sends, t + rto(min(total, 64)+1)
}

func ruleSynRetrySchedule(f *Facts) []Finding {
	const id = "syn-retry-schedule"
	r, ok := f.sysctl(sysSynRetries)
	if !ok {
		return unreadable(AreaKernel, id, "SYN retry schedule", f, sysSynRetries)
	}
	lin, linOK := f.sysctl(sysSynLinear)
	linNote := fmt.Sprintf("%s = %d", sysSynLinear, lin)
	if !linOK {
		linNote = sysSynLinear + " absent (kernel before 6.5: exponential from the start)"
	}
	sends, giveUp := SynSchedule(r, lin)
	parts := make([]string, len(sends))
	for i, s := range sends {
		parts[i] = strconv.FormatInt(s, 10)
	}
	ev := fmt.Sprintf("%s = %d, %s: a SYN that is dropped is retransmitted at %s s and connect() gives up after %d s",
		sysSynRetries, r, linNote, strings.Join(parts, ", "), giveUp)
	if sa, ok := f.sysctl(sysSynackRetries); ok {
		ev += fmt.Sprintf("; %s = %d", sysSynackRetries, sa)
	}
	return []Finding{newFinding(AreaKernel, id, Info, "SYN retransmit waves", ev,
		"set client connect timeouts well below the first retransmit burst and use jittered exponential backoff, so fleets do not redial in lock-step")}
}

// minEphemeralPorts is the range below which a client host runs out of
// ports to one Valkey endpoint during a reconnect storm.
const minEphemeralPorts = 16384

func rulePortRange(f *Facts) []Finding {
	const id = "ephemeral-ports-narrow"
	if f.Role != RoleClient {
		return nil
	}
	r, ok := f.sysctlFields(sysPortRange)
	if !ok || len(r) != 2 {
		return unreadable(AreaKernel, id, "ephemeral port range", f, sysPortRange)
	}
	n := r[1] - r[0] + 1
	// A closed client socket stays in TIME_WAIT for 60 s, holding its
	// port for that destination.
	ev := fmt.Sprintf("%s = %d-%d: %d ports, so at most ~%d new connections/s to one Valkey endpoint sustained (TIME_WAIT 60 s)",
		sysPortRange, r[0], r[1], n, n/60)
	if n < minEphemeralPorts {
		fd := newFinding(AreaKernel, id, Warning, "ephemeral port range is narrow", ev,
			sysctlFix(f, sysPortRange, `"10240 65535"`))
		fd.Sysctls = map[string]string{sysPortRange: "10240 65535"}
		return []Finding{fd}
	}
	return []Finding{newFinding(AreaKernel, id, OK, "ephemeral port range is wide", ev, "")}
}

func ruleTWReuse(f *Facts) []Finding {
	const id = "tw-reuse-disabled"
	if f.Role != RoleClient {
		return nil
	}
	v, ok := f.sysctl(sysTWReuse)
	if !ok {
		return unreadable(AreaKernel, id, "tcp_tw_reuse", f, sysTWReuse)
	}
	switch v {
	case 0:
		fd := newFinding(AreaKernel, id, Warning, "TIME_WAIT ports are never reused for new connections",
			fmt.Sprintf("%s = 0: every reconnect holds a port for 60 s", sysTWReuse), sysctlFix(f, sysTWReuse, "1"))
		fd.Sysctls = map[string]string{sysTWReuse: "1"}
		return []Finding{fd}
	case 2:
		return []Finding{newFinding(AreaKernel, id, Info, "TIME_WAIT reuse is on for loopback only",
			fmt.Sprintf("%s = 2 (kernel default): outgoing connections to a remote Valkey do not reuse TIME_WAIT ports", sysTWReuse),
			sysctlFix(f, sysTWReuse, "1"))}
	}
	return []Finding{newFinding(AreaKernel, id, OK, "TIME_WAIT ports are reused", fmt.Sprintf("%s = %d", sysTWReuse, v), "")}
}
