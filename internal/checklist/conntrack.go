package checklist

import (
	"fmt"
	"strconv"
)

// Conntrack sysctls. nf_conntrack_count is per namespace; nf_conntrack_max
// is global and writable only from the initial namespace.
const (
	sysCTMax   = "net.netfilter.nf_conntrack_max"
	sysCTCount = "net.netfilter.nf_conntrack_count"
)

// conntrackTimeWait is nf_conntrack_tcp_timeout_time_wait (seconds): every
// closed connection keeps its entry this long.
const conntrackTimeWait = 120

// Fill ratios of the conntrack table.
const (
	ctWarnRatio     = 0.75 // node_exporter mixin's alert threshold
	ctCriticalRatio = 0.90
)

func conntrackRules() []Rule {
	return []Rule{ruleConntrackFull, ruleConntrackProjected, ruleConntrackPort}
}

func ruleConntrackFull(f *Facts) []Finding {
	const id = "conntrack-near-full"
	c := f.Conntrack
	switch {
	case c.Err != "":
		return []Finding{newFinding(AreaConntrack, id, Info, "conntrack table: not checked", "could not read conntrack: "+c.Err, "")}
	case !c.Loaded:
		return []Finding{newFinding(AreaConntrack, id, OK, "conntrack is not loaded",
			"nf_conntrack is not loaded in this namespace: there is no table to fill", "")}
	case c.Count == nil || c.Max == nil || *c.Max == 0:
		return []Finding{newFinding(AreaConntrack, id, Info, "conntrack table: not checked",
			"nf_conntrack is loaded but count or max could not be read", "")}
	}
	ratio := float64(*c.Count) / float64(*c.Max)
	ev := fmt.Sprintf("%s = %d of %s = %d (%.0f%% full)", sysCTCount, *c.Count, sysCTMax, *c.Max, ratio*100)
	sev := OK
	switch {
	case ratio >= ctCriticalRatio:
		sev = Critical
	case ratio >= ctWarnRatio:
		sev = Warning
	}
	if sev == OK {
		return []Finding{newFinding(AreaConntrack, id, OK, "conntrack table has room", ev, "")}
	}
	want := strconv.FormatUint(*c.Max*2, 10)
	fd := newFinding(AreaConntrack, id, sev, "conntrack table is nearly full",
		ev+"; when full, new SYNs are dropped before TCP sees them (no ListenOverflows), clients just retransmit",
		"sysctl -w "+sysCTMax+"="+want+" (global: run in the host namespace), and exempt the Valkey port with NOTRACK where no NAT applies")
	fd.Sysctls = map[string]string{sysCTMax: want}
	return []Finding{fd}
}

// connRate is the namespace's new-connection rate over the window: the
// larger of PassiveOpens and ActiveOpens per second (a connection with both
// ends in the namespace counts once in each, and takes one entry).
func connRate(f *Facts) (float64, bool) {
	if f.Window <= 0 {
		return 0, false
	}
	p, ok1 := f.counterDelta("Tcp.PassiveOpens")
	a, ok2 := f.counterDelta("Tcp.ActiveOpens")
	if !ok1 || !ok2 {
		return 0, false
	}
	return float64(max(p, a)) / f.Window.Seconds(), true
}

func ruleConntrackProjected(f *Facts) []Finding {
	const id = "conntrack-projected-fill"
	c := f.Conntrack
	if !c.Loaded || c.Err != "" || c.Count == nil || c.Max == nil || *c.Max == 0 {
		return nil
	}
	rate, ok := connRate(f)
	if !ok {
		return []Finding{newFinding(AreaConntrack, id, Info, "conntrack churn: not measured",
			"the connection rate could not be measured (TCP counters not read twice)", "")}
	}
	base := *c.Count
	if est, ok := f.Counters["Tcp.CurrEstab"]; ok {
		base = est
	}
	// Steady state: established connections plus one TIME_WAIT entry per
	// closed connection for 120 s.
	projected := float64(base) + rate*conntrackTimeWait
	maxv := float64(*c.Max)
	fillRate := (maxv - float64(base)) / conntrackTimeWait
	ev := fmt.Sprintf("%.1f new connections/s over %s, established %d: steady state ≈ %d + %.1f × %d s = %.0f of %d entries (%.0f%%); the table fills at a sustained %.0f new connections/s",
		rate, f.Window, base, base, rate, conntrackTimeWait, projected, *c.Max, projected/maxv*100, max(fillRate, 0))
	if projected >= maxv*ctCriticalRatio {
		return []Finding{newFinding(AreaConntrack, id, Warning, "connection churn will fill the conntrack table", ev,
			"reuse connections (pools, no per-request connect), raise "+sysCTMax+", or NOTRACK the Valkey port")}
	}
	return []Finding{newFinding(AreaConntrack, id, OK, "connection churn fits the conntrack table", ev, "")}
}

func ruleConntrackPort(f *Facts) []Finding {
	const id = "conntrack-tracks-valkey-port"
	c := f.Conntrack
	if !c.Loaded || f.Role == RoleClient || f.Port == 0 {
		return nil
	}
	if c.PortTracked == nil {
		why := c.PortTrackedErr
		if why == "" {
			why = "not checked"
		}
		return []Finding{newFinding(AreaConntrack, id, Info, "whether the Valkey port is tracked: unknown", why, "")}
	}
	if !*c.PortTracked {
		return []Finding{newFinding(AreaConntrack, id, OK, "the Valkey port is not tracked",
			fmt.Sprintf("this audit's connection to port %d has no conntrack entry (a NOTRACK rule, or nothing in this namespace needs connection tracking)", f.Port), "")}
	}
	p := strconv.Itoa(f.Port)
	return []Finding{newFinding(AreaConntrack, id, Info, "Valkey connections take conntrack entries",
		fmt.Sprintf("this audit's connection to port %d has a conntrack entry: a storm fills the table with SYN_SENT/TIME_WAIT entries", f.Port),
		"if no NAT/DNAT (kube-proxy, Docker port publishing) applies to the port: nft add table inet raw; "+
			"nft add chain inet raw pre '{ type filter hook prerouting priority -300; }'; nft add rule inet raw pre tcp dport "+p+" notrack; "+
			"nft add chain inet raw out '{ type filter hook output priority -300; }'; nft add rule inet raw out tcp sport "+p+" notrack "+
			"(untrack both directions; rules matching ct state established must also accept ct state untracked)")}
}
