package checklist

import (
	"fmt"
	"strings"
	"time"
)

// Counter names read from /proc/net/netstat and /proc/net/snmp.
var CounterNames = []string{
	"TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPReqQFullDrop",
	"TcpExt.TCPReqQFullDoCookies", "TcpExt.SyncookiesSent",
	"Tcp.PassiveOpens", "Tcp.ActiveOpens", "Tcp.CurrEstab",
}

func historyRules() []Rule {
	return []Rule{ruleListenOverflows, ruleSynDrops, ruleRejected, ruleEvicted}
}

// nsScope says what the TCP counters cover (principle 0 in docs/design.md).
func nsScope(f *Facts) string {
	if f.NetNS != "" {
		return "namespace " + f.NetNS + " (all its listeners, not only Valkey's port)"
	}
	return "this network namespace (all its listeners, not only Valkey's port)"
}

func ruleListenOverflows(f *Facts) []Finding {
	const id = "listen-overflows-seen"
	if f.Role == RoleClient {
		return nil
	}
	n, ok := f.counter("TcpExt.ListenOverflows")
	if !ok {
		why := f.CountersErr
		if why == "" {
			why = "TcpExt ListenOverflows missing"
		}
		return []Finding{newFinding(AreaHistory, id, Info, "accept-queue overflows: not checked", why, "")}
	}
	if n == 0 {
		return []Finding{newFinding(AreaHistory, id, OK, "no accept-queue overflows",
			"TcpExt ListenOverflows = 0 in "+nsScope(f), "")}
	}
	ev := fmt.Sprintf("TcpExt ListenOverflows = %d since the namespace was created, in %s", n, nsScope(f))
	fix := "raise net.core.somaxconn and tcp-backlog together, find what keeps Valkey from accepting (slow commands, per-cycle cap), and make clients back off with jitter; watch it live with stormguard watch"
	if d, ok := f.counterDelta("TcpExt.ListenOverflows"); ok && d > 0 {
		return []Finding{newFinding(AreaHistory, id, Critical, "the accept queue is overflowing now",
			ev+fmt.Sprintf("; +%d during this audit's %s window", d, f.Window), fix)}
	}
	return []Finding{newFinding(AreaHistory, id, Warning, "the accept queue has overflowed", ev, fix)}
}

func ruleSynDrops(f *Facts) []Finding {
	const id = "syn-drops-seen"
	if f.Role == RoleClient {
		return nil
	}
	drops, ok1 := f.counter("TcpExt.ListenDrops")
	ov, ok2 := f.counter("TcpExt.ListenOverflows")
	if !ok1 || !ok2 {
		return nil // ruleListenOverflows reports unreadable counters
	}
	full, _ := f.counter("TcpExt.TCPReqQFullDrop")
	synq := uint64(0)
	if drops > ov {
		synq = drops - ov
	}
	if synq == 0 && full == 0 {
		return []Finding{newFinding(AreaHistory, id, OK, "no SYN-queue drops",
			fmt.Sprintf("TcpExt ListenDrops %d - ListenOverflows %d = 0, TCPReqQFullDrop %d", drops, ov, full), "")}
	}
	return []Finding{newFinding(AreaHistory, id, Warning, "SYNs have been dropped",
		fmt.Sprintf("TcpExt ListenDrops %d - ListenOverflows %d = %d other listener drops, TCPReqQFullDrop %d, in %s", drops, ov, synq, full, nsScope(f)),
		"enable SYN cookies ("+sysSyncookies+" = 1) and check conntrack and SYN rate limits")}
}

func ruleRejected(f *Facts) []Finding {
	const id = "rejected-connections-seen"
	if f.Valkey == nil && strings.Contains(f.ValkeyErr, errMaxClients) {
		return rejectedAtMaxclients(f)
	}
	n, ok := f.Valkey.infoInt("rejected_connections")
	if !ok {
		return nil
	}
	if n == 0 {
		return []Finding{newFinding(AreaHistory, id, OK, "Valkey has rejected no connections", "rejected_connections 0 since start", "")}
	}
	ev := fmt.Sprintf("rejected_connections %d since start (maxclients reached, or protected mode)", n)
	fix := "bound client pools and make clients back off on \"max number of clients reached\"; raise maxclients if the load is legitimate"
	if d, ok := f.Valkey.infoDelta("rejected_connections"); ok && d > 0 {
		return []Finding{newFinding(AreaHistory, id, Critical, "Valkey is rejecting connections now",
			ev+fmt.Sprintf("; +%d during this audit's %s window", d, f.Window), fix)}
	}
	return []Finding{newFinding(AreaHistory, id, Warning, "Valkey has rejected connections", ev, fix)}
}

func ruleEvicted(f *Facts) []Finding {
	const id = "evicted-clients-seen"
	n, ok := f.Valkey.infoInt("evicted_clients")
	if !ok {
		return nil
	}
	if n == 0 {
		return []Finding{newFinding(AreaHistory, id, OK, "no clients evicted", "evicted_clients 0", "")}
	}
	return []Finding{newFinding(AreaHistory, id, Info, "Valkey has evicted clients",
		fmt.Sprintf("evicted_clients %d: clients closed for memory (maxmemory-clients) reconnect at once", n),
		"check maxmemory-clients and the clients' buffer use (CLIENT LIST omem/qbuf when calm)")}
}

// rejectedAtMaxclients reports rejected-connections-seen when Valkey
// refused the audit's own connection at maxclients, so INFO could not be
// read: the refusal itself is the evidence that Valkey rejects connections
// now, and a running agent's last counters (read over the connection it
// keeps) add how many. Each figure says where it came from.
func rejectedAtMaxclients(f *Facts) []Finding {
	ev := "check's own connection was refused just now: " + f.ValkeyErr
	if a := f.Agent; a != nil {
		if a.Err != "" {
			ev += fmt.Sprintf("; no counters from a stormguard agent (%s: %s)", a.URL, a.Err)
		} else {
			ev += fmt.Sprintf("; the stormguard agent at %s, sample taken %s:", a.URL, a.SampleTime.UTC().Format(time.RFC3339))
			sep := " "
			if a.Rejected != nil {
				ev += fmt.Sprintf("%srejected_connections %d since start", sep, *a.Rejected)
				sep = ", "
			}
			if a.Connected != nil {
				ev += fmt.Sprintf("%sconnected_clients %d", sep, *a.Connected)
				if a.MaxClients != nil {
					ev += fmt.Sprintf(" of maxclients %d", *a.MaxClients)
				}
			}
		}
	}
	return []Finding{newFinding(AreaHistory, "rejected-connections-seen", Critical, "Valkey is rejecting connections now", ev,
		"bound client pools and make clients back off on \"max number of clients reached\"; raise maxclients if the load is legitimate")}
}
