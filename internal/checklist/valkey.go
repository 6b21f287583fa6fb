package checklist

import (
	"fmt"
	"strconv"
	"strings"
)

// ValkeyConfigParams are the parameters Gather asks CONFIG GET for.
var ValkeyConfigParams = []string{
	"tcp-backlog", "maxclients", "timeout", "tcp-keepalive",
	"max-new-connections-per-cycle", "max-new-tls-connections-per-cycle",
	"io-threads", "tls-port",
}

// reservedFDs is what Valkey keeps for itself beyond maxclients
// (CONFIG_MIN_RESERVED_FDS).
const reservedFDs = 32

// defaultMaxClients is Valkey's default maxclients.
const defaultMaxClients = 10000

// Fill ratios of maxclients.
const (
	clientsWarnRatio     = 0.75
	clientsCriticalRatio = 0.90
)

// errMaxClients is the rejection Valkey writes at maxclients.
const errMaxClients = "max number of clients"

func valkeyRules() []Rule {
	return []Rule{ruleValkeyChecked, ruleValkeyVersion, ruleTCPBacklogSmall, ruleClientsNearMax, ruleFDLimit,
		ruleIdleTimeout, ruleKeepalive, ruleAcceptCap, ruleTLSThreads}
}

func ruleValkeyChecked(f *Facts) []Finding {
	const id = "valkey-not-checked"
	if f.Valkey != nil {
		if f.Valkey.ConfigErr != "" {
			return []Finding{newFinding(AreaValkey, "valkey-config-not-read", Info, "Valkey's configuration was not read",
				f.Valkey.ConfigErr+"; maxclients comes from INFO, other configuration rules were skipped",
				"allow CONFIG GET for the audit user (ACL: +config|get)")}
		}
		return nil
	}
	why := f.ValkeyErr
	if why == "" {
		why = "no --valkey address given"
	}
	return []Finding{newFinding(AreaValkey, id, Info, "Valkey was not checked",
		why+"; only kernel, conntrack and NIC rules ran", "stormguard check --valkey HOST:PORT (add --password-file if AUTH is required)")}
}

func ruleValkeyVersion(f *Facts) []Finding {
	const id = "valkey-version"
	v := f.Valkey
	if v == nil {
		return nil
	}
	ver := v.Version()
	name := "Redis"
	if v.IsValkey() {
		name = "Valkey"
	}
	if v.IsValkey() && versionAtLeast(ver, 8, 0) {
		return []Finding{newFinding(AreaValkey, id, OK, "Valkey caps accepts per event-loop cycle",
			fmt.Sprintf("%s %s: max-new-connections-per-cycle and max-new-tls-connections-per-cycle are available", name, ver), "")}
	}
	return []Finding{newFinding(AreaValkey, id, Info, "server accepts up to 1000 connections per event-loop call",
		fmt.Sprintf("%s %s hard-codes 1000 accepts per call (MAX_ACCEPTS_PER_CALL): a storm can monopolise the main thread; no per-cycle cap to tune", name, ver),
		"upgrade to Valkey >= 8.0 (per-cycle accept caps), >= 8.1 for TLS handshakes on I/O threads")}
}

func ruleTCPBacklogSmall(f *Facts) []Finding {
	const id = "tcp-backlog-small"
	n, ok := f.Valkey.configInt("tcp-backlog")
	if !ok {
		return nil
	}
	if n < defaultTCPBacklog {
		return []Finding{newFinding(AreaValkey, id, Info, "tcp-backlog is below the default",
			fmt.Sprintf("tcp-backlog %d < %d: a short burst of connects overflows the accept queue", n, defaultTCPBacklog),
			"tcp-backlog 511 (or more) in valkey.conf with net.core.somaxconn at least as large; needs a restart")}
	}
	return []Finding{newFinding(AreaValkey, id, OK, "tcp-backlog is at least the default", fmt.Sprintf("tcp-backlog %d", n), "")}
}

// clientsUsed is connected_clients plus cluster_connections (both count
// against maxclients).
func clientsUsed(v *ValkeyFacts) (int64, string, bool) {
	n, ok := v.infoInt("connected_clients")
	if !ok {
		return 0, "", false
	}
	desc := fmt.Sprintf("connected_clients %d", n)
	if c, ok := v.infoInt("cluster_connections"); ok && c > 0 {
		n += c
		desc += fmt.Sprintf(" + cluster_connections %d", c)
	}
	return n, desc, true
}

func ruleClientsNearMax(f *Facts) []Finding {
	const id, title = "clients-near-maxclients", "clients are close to maxclients"
	v := f.Valkey
	if v == nil {
		if strings.Contains(f.ValkeyErr, errMaxClients) {
			return []Finding{newFinding(AreaValkey, id, Critical, "Valkey is at maxclients",
				"this audit's connection was refused: "+f.ValkeyErr,
				"find who holds the connections (CLIENT LIST when calm, or ss -tn sport = :PORT), bound client pools, then raise maxclients with CONFIG SET maxclients N if fds allow")}
		}
		return nil
	}
	used, desc, ok1 := clientsUsed(v)
	mc, ok2 := v.configInt("maxclients")
	if !ok1 || !ok2 || mc <= 0 {
		return []Finding{newFinding(AreaValkey, id, Info, "clients vs maxclients: not checked", "connected_clients or maxclients missing from INFO/CONFIG", "")}
	}
	ratio := float64(used) / float64(mc)
	ev := fmt.Sprintf("%s of maxclients %d (%.0f%%, including this audit's connection)", desc, mc, ratio*100)
	sev := OK
	switch {
	case ratio >= clientsCriticalRatio:
		sev = Critical
	case ratio >= clientsWarnRatio:
		sev = Warning
	}
	if sev == OK {
		return []Finding{newFinding(AreaValkey, id, OK, "clients are well below maxclients", ev, "")}
	}
	return []Finding{newFinding(AreaValkey, id, sev, title, ev,
		fmt.Sprintf("bound client pools (see the clients findings), or CONFIG SET maxclients %d (needs %d file descriptors)", mc*2, mc*2+reservedFDs))}
}

func ruleFDLimit(f *Facts) []Finding {
	const id = "fd-limit-below-maxclients"
	v := f.Valkey
	if v == nil || f.Role == RoleClient {
		return nil
	}
	mc, ok := v.configInt("maxclients")
	if !ok {
		return nil
	}
	p := f.Process
	if p.MaxOpenFiles == nil {
		why := p.Err
		if why == "" {
			why = "Valkey's process was not found"
		}
		return []Finding{newFinding(AreaValkey, id, Info, "Valkey's file-descriptor limit: not checked", why, "")}
	}
	lim := *p.MaxOpenFiles
	limS := strconv.FormatUint(lim, 10)
	if lim == Unlimited {
		limS = "unlimited"
	}
	proc := fmt.Sprintf("pid %d (found via %s)", p.PID, p.Via)
	need := uint64(mc) + reservedFDs
	fix := fmt.Sprintf("raise the limit to at least %d: LimitNOFILE=%d in the systemd unit (or ulimit -n %d before starting), then restart Valkey with maxclients %d",
		defaultMaxClients+reservedFDs, defaultMaxClients+reservedFDs, defaultMaxClients+reservedFDs, max(mc, defaultMaxClients))
	switch {
	case lim < need:
		return []Finding{newFinding(AreaValkey, id, Critical, "file-descriptor limit is below maxclients",
			fmt.Sprintf("Max open files %s for %s < maxclients %d + %d reserved: accept() fails with EMFILE before maxclients is reached", limS, proc, mc, reservedFDs), fix)}
	case lim == need && mc < defaultMaxClients:
		return []Finding{newFinding(AreaValkey, id, Warning, "maxclients was cut to fit the file-descriptor limit",
			fmt.Sprintf("Max open files %s for %s = maxclients %d + %d: Valkey reduced maxclients at startup to compensate for a low ulimit (log: \"maxclients has been reduced to %d\")", limS, proc, mc, reservedFDs, mc), fix)}
	}
	return []Finding{newFinding(AreaValkey, id, OK, "file-descriptor limit covers maxclients",
		fmt.Sprintf("Max open files %s for %s >= maxclients %d + %d", limS, proc, mc, reservedFDs), "")}
}

func ruleIdleTimeout(f *Facts) []Finding {
	const id = "idle-timeout-disabled"
	n, ok := f.Valkey.configInt("timeout")
	if !ok {
		return nil
	}
	if n == 0 {
		return []Finding{newFinding(AreaValkey, id, Info, "idle clients are never closed",
			"timeout 0: leaked or abandoned connections hold maxclients slots forever",
			"CONFIG SET timeout 300 (only if no client relies on idle connections staying open, e.g. blocked subscribers without pings)")}
	}
	return []Finding{newFinding(AreaValkey, id, OK, "idle clients are closed", fmt.Sprintf("timeout %d s", n), "")}
}

func ruleKeepalive(f *Facts) []Finding {
	const id = "tcp-keepalive-disabled"
	n, ok := f.Valkey.configInt("tcp-keepalive")
	if !ok {
		return nil
	}
	switch {
	case n == 0:
		return []Finding{newFinding(AreaValkey, id, Warning, "TCP keepalive is off",
			"tcp-keepalive 0: connections of clients that vanished (crash, failover, network cut) stay until a write fails, piling up toward maxclients",
			"CONFIG SET tcp-keepalive 300")}
	case n > 300:
		return []Finding{newFinding(AreaValkey, id, Info, "TCP keepalive is slow",
			fmt.Sprintf("tcp-keepalive %d s: dead peers are noticed late", n), "CONFIG SET tcp-keepalive 300")}
	}
	return []Finding{newFinding(AreaValkey, id, OK, "TCP keepalive is on", fmt.Sprintf("tcp-keepalive %d s", n), "")}
}

// Valkey's per-cycle accept defaults.
const (
	defaultAcceptsPerCycle    = 10
	defaultTLSAcceptsPerCycle = 1
)

func ruleAcceptCap(f *Facts) []Finding {
	const id = "accept-cap-per-cycle"
	plain, ok := f.Valkey.configInt("max-new-connections-per-cycle")
	if !ok {
		return nil // ruleValkeyVersion explains servers without the cap
	}
	ev := fmt.Sprintf("max-new-connections-per-cycle %d", plain)
	tlsN, tlsOK := f.Valkey.configInt("max-new-tls-connections-per-cycle")
	if tlsOK {
		ev += fmt.Sprintf(", max-new-tls-connections-per-cycle %d", tlsN)
	}
	if plain > defaultAcceptsPerCycle || (tlsOK && tlsN > defaultTLSAcceptsPerCycle) {
		return []Finding{newFinding(AreaValkey, id, Info, "accept caps are raised above the defaults",
			ev+fmt.Sprintf(" (defaults %d and %d): a storm drains faster but takes more main-thread time from established clients", defaultAcceptsPerCycle, defaultTLSAcceptsPerCycle),
			fmt.Sprintf("keep only if clients have bounded pools and backoff; else CONFIG SET max-new-connections-per-cycle %d", defaultAcceptsPerCycle))}
	}
	return []Finding{newFinding(AreaValkey, id, OK, "accept caps protect established clients", ev, "")}
}

func ruleTLSThreads(f *Facts) []Finding {
	const id = "tls-handshakes-on-main-thread"
	v := f.Valkey
	if v == nil {
		return nil
	}
	tp, _ := v.configInt("tls-port")
	if tp == 0 && !v.TLS {
		return nil
	}
	io, ok := v.configInt("io-threads")
	if !ok {
		io = 1
	}
	ver := v.Version()
	offload := v.IsValkey() && versionAtLeast(ver, 8, 1)
	ev := fmt.Sprintf("TLS on (tls-port %d), io-threads %d, version %s", tp, io, ver)
	switch {
	case io <= 1:
		return []Finding{newFinding(AreaValkey, id, Warning, "TLS handshakes run on the main thread",
			ev+": every handshake (several ms of CPU) competes with commands; a TLS storm stalls Valkey",
			"io-threads 4 in valkey.conf (needs a restart) on Valkey >= 8.1, which offloads TLS negotiation to I/O threads")}
	case !offload:
		return []Finding{newFinding(AreaValkey, id, Info, "TLS handshakes are not offloaded before Valkey 8.1",
			ev+": I/O threads do not run TLS negotiation before 8.1", "upgrade to Valkey >= 8.1")}
	}
	return []Finding{newFinding(AreaValkey, id, OK, "TLS handshakes are offloaded to I/O threads", ev, "")}
}
