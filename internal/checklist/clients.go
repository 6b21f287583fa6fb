package checklist

import (
	"fmt"
	"sort"
	"strings"
)

// AuditClientName is the CLIENT SETNAME of check's own connection; client
// rules leave it out.
const AuditClientName = "stormguard-check"

// Client-list thresholds.
const (
	// ClientListMaxClients is the largest connected_clients for which
	// Gather runs CLIENT LIST (O(clients) on Valkey's main thread).
	ClientListMaxClients = 5000
	// ClientListMaxRatio is the largest connected/maxclients for which
	// CLIENT LIST is run: near the limit Valkey is, or soon will be, busy.
	ClientListMaxRatio = 0.5
	// youngAge is the age (s) below which a connection counts as new.
	youngAge = 10
	// youngShareWarn is the share of new connections that means churn.
	youngShareWarn = 0.5
	// minClientsForShare avoids verdicts on a handful of connections.
	minClientsForShare = 10
	// perAddrShareWarn is the share of maxclients one address may hold.
	perAddrShareWarn = 0.25
	// perAddrAbsWarn is the connection count per address that suggests an
	// unbounded pool whatever maxclients is.
	perAddrAbsWarn = 1000
)

func clientRules() []Rule {
	return []Rule{ruleClientsChecked, rulePerAddress, ruleYoungConnections, ruleLibraries}
}

// others are the clients other than this audit's own connection.
func others(f *Facts) []ClientConn {
	out := make([]ClientConn, 0, len(f.Clients))
	for _, c := range f.Clients {
		if c.Name == AuditClientName {
			continue
		}
		out = append(out, c)
	}
	return out
}

func ruleClientsChecked(f *Facts) []Finding {
	const id = "clients-not-checked"
	if f.Valkey == nil || f.Clients != nil {
		return nil
	}
	why := f.ClientsErr
	if why == "" {
		why = "CLIENT LIST was not read"
	}
	return []Finding{newFinding(AreaClients, id, Info, "client hygiene was not checked", why, "run stormguard check again when Valkey is calm")}
}

type group struct {
	key  string
	n    int
	libs map[string]int
}

func groupBy(cs []ClientConn, key func(ClientConn) string) []group {
	m := map[string]*group{}
	for _, c := range cs {
		k := key(c)
		g := m[k]
		if g == nil {
			g = &group{key: k, libs: map[string]int{}}
			m[k] = g
		}
		g.n++
		g.libs[libLabel(c)]++
	}
	out := make([]group, 0, len(m))
	for _, g := range m {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].n != out[j].n {
			return out[i].n > out[j].n
		}
		return out[i].key < out[j].key
	})
	return out
}

func libLabel(c ClientConn) string {
	if c.LibName == "" {
		return "unknown library"
	}
	if c.LibVer != "" {
		return c.LibName + " " + c.LibVer
	}
	return c.LibName
}

func topLibs(m map[string]int) string {
	type kv struct {
		k string
		n int
	}
	var s []kv
	for k, n := range m {
		s = append(s, kv{k, n})
	}
	sort.Slice(s, func(i, j int) bool { return s[i].n > s[j].n || (s[i].n == s[j].n && s[i].k < s[j].k) })
	var parts []string
	for i, e := range s {
		if i == 2 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", e.k, e.n))
	}
	return strings.Join(parts, ", ")
}

func rulePerAddress(f *Facts) []Finding {
	const id = "clients-per-address"
	if f.Clients == nil {
		return nil
	}
	cs := others(f)
	if len(cs) == 0 {
		return []Finding{newFinding(AreaClients, id, OK, "no other clients connected", "CLIENT LIST shows only this audit's connection", "")}
	}
	gs := groupBy(cs, func(c ClientConn) string { return c.IP })
	var parts []string
	for i, g := range gs {
		if i == 3 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s: %d (%s)", g.key, g.n, topLibs(g.libs)))
	}
	ev := fmt.Sprintf("%d clients from %d addresses; top: %s", len(cs), len(gs), strings.Join(parts, "; "))
	limit := perAddrAbsWarn
	if mc, ok := f.Valkey.configInt("maxclients"); ok && mc > 0 {
		limit = min(limit, max(int(float64(mc)*perAddrShareWarn), minClientsForShare))
	}
	if gs[0].n > limit {
		return []Finding{newFinding(AreaClients, id, Warning, "one address holds a large share of connections",
			ev+fmt.Sprintf("; %s holds %d > %d", gs[0].key, gs[0].n, limit),
			"bound the pool on that host (go-redis PoolSize/MaxActiveConns, valkey-py BlockingConnectionPool max_connections) and check for connection leaks")}
	}
	return []Finding{newFinding(AreaClients, id, OK, "connections are spread over addresses", ev, "")}
}

func ruleYoungConnections(f *Facts) []Finding {
	const id = "clients-young-connections"
	if f.Clients == nil {
		return nil
	}
	cs := others(f)
	young := 0
	for _, c := range cs {
		if c.Age < youngAge {
			young++
		}
	}
	if len(cs) < minClientsForShare {
		return []Finding{newFinding(AreaClients, id, OK, "too few clients to judge churn",
			fmt.Sprintf("%d clients, %d younger than %d s", len(cs), young, youngAge), "")}
	}
	share := float64(young) / float64(len(cs))
	ev := fmt.Sprintf("%d of %d clients (%.0f%%) are younger than %d s", young, len(cs), share*100, youngAge)
	if share >= youngShareWarn {
		gs := groupBy(filter(cs, func(c ClientConn) bool { return c.Age < youngAge }), func(c ClientConn) string { return c.IP })
		ev += fmt.Sprintf("; most from %s (%s)", gs[0].key, topLibs(gs[0].libs))
		return []Finding{newFinding(AreaClients, id, Warning, "many connections are new: clients are churning",
			ev, "keep connections open (pools, no connect per request), and check client timeouts that close and redial")}
	}
	return []Finding{newFinding(AreaClients, id, OK, "connections are long-lived", ev, "")}
}

func filter(cs []ClientConn, keep func(ClientConn) bool) []ClientConn {
	var out []ClientConn
	for _, c := range cs {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// libAdvice is what is known about a client library's reconnect behaviour
// (DOMAIN §5), keyed by a lower-case lib-name prefix.
var libAdvice = []struct{ prefix, advice string }{
	{"glide", "GLIDE reconnects immediately, then ±20% jitter, then an unjittered constant delay that keeps fleets in lock-step"},
	{"valkey-py", "valkey-py defaults to Retry(NoBackoff(), 0) and an unbounded ConnectionPool"},
	{"redis-py", "redis-py defaults to immediate retries and an unbounded ConnectionPool"},
	{"go-redis", "go-redis retries dial and maxclients errors, up to 20 dials per command"},
	{"valkey", "valkey-go redials without dial backoff (a failed dial is retried by the next command)"},
}

func adviceFor(lib string) (string, bool) {
	l := strings.ToLower(lib)
	for _, a := range libAdvice {
		if a.prefix == "valkey" && l != "valkey" {
			continue // valkey-go's lib-name is exactly "valkey"
		}
		if strings.HasPrefix(l, a.prefix) {
			return a.advice, true
		}
	}
	return "", false
}

func ruleLibraries(f *Facts) []Finding {
	const id = "clients-library-no-backoff"
	if f.Clients == nil {
		return nil
	}
	counts := map[string]int{}
	adv := map[string]string{}
	for _, c := range others(f) {
		if a, ok := adviceFor(c.LibName); ok {
			counts[libLabel(c)]++
			adv[libLabel(c)] = a
		}
	}
	if len(counts) == 0 {
		return []Finding{newFinding(AreaClients, id, OK, "no client library known to reconnect without backoff",
			"no connected client reports a lib-name with known storm-prone defaults", "")}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d: %s", k, counts[k], adv[k]))
	}
	return []Finding{newFinding(AreaClients, id, Info, "clients use libraries whose defaults can start a storm",
		strings.Join(parts, "; "),
		"configure jittered exponential reconnect backoff and bounded pools in those clients (Go: the stormguard dialer package; preview schedules with stormguard backoff)")}
}
