package detect

import (
	"cmp"
	"net/netip"
	"slices"
)

// DefaultTopK is how many sources Attribute keeps when k <= 0.
const DefaultTopK = 5

// Source is one client IP or prefix and its share of the sockets looked at.
type Source struct {
	// IP is set on per-address rows ("10.0.3.7"); empty on prefix rows.
	IP string `json:"ip,omitempty"`
	// Prefix is the /24 (IPv4) or /64 (IPv6) the IP belongs to, or the
	// prefix a prefix row counts.
	Prefix string  `json:"prefix"`
	Count  int     `json:"count"`
	Share  float64 `json:"share"`
}

// Attribution says who the new or half-open connections come from.
type Attribution struct {
	// Total is the number of usable addresses aggregated.
	Total int `json:"total"`
	// DistinctIPs and DistinctPrefixes count the different sources.
	DistinctIPs      int `json:"distinct_ips"`
	DistinctPrefixes int `json:"distinct_prefixes"`
	// TopIPs and TopPrefixes are the k largest, largest first (ties by
	// address, so the result is deterministic).
	TopIPs      []Source `json:"top_ips"`
	TopPrefixes []Source `json:"top_prefixes"`
	// Skipped counts invalid (zero) addresses that were ignored.
	Skipped int `json:"skipped"`
}

// PrefixOf returns the aggregation prefix of ip: /24 for IPv4 (a subnet of
// pods or hosts behind one NAT), /64 for IPv6 (one site's subnet). IPv4
// mapped into IPv6 (::ffff:a.b.c.d, as dual-stack listeners report) counts
// as IPv4.
func PrefixOf(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 64
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// Attribute aggregates remote addresses (for example of SYN_RECV or young
// ESTABLISHED sockets on the port) into the top k IPs and top k prefixes
// with their shares. It is pure: the caller collects the addresses.
func Attribute(addrs []netip.Addr, k int) Attribution {
	if k <= 0 {
		k = DefaultTopK
	}
	ips := make(map[netip.Addr]int, min(len(addrs), 4096))
	prefixes := make(map[netip.Prefix]int, min(len(addrs), 1024))
	a := Attribution{TopIPs: []Source{}, TopPrefixes: []Source{}}
	for _, ip := range addrs {
		if !ip.IsValid() {
			a.Skipped++
			continue
		}
		ip = ip.Unmap().WithZone("")
		ips[ip]++
		prefixes[PrefixOf(ip)]++
		a.Total++
	}
	a.DistinctIPs, a.DistinctPrefixes = len(ips), len(prefixes)
	if a.Total == 0 {
		return a
	}
	share := func(n int) float64 { return float64(n) / float64(a.Total) }

	type ipCount struct {
		ip netip.Addr
		n  int
	}
	il := make([]ipCount, 0, len(ips))
	for ip, n := range ips {
		il = append(il, ipCount{ip, n})
	}
	slices.SortFunc(il, func(x, y ipCount) int {
		if c := cmp.Compare(y.n, x.n); c != 0 {
			return c
		}
		return x.ip.Compare(y.ip)
	})
	for _, e := range il[:min(k, len(il))] {
		a.TopIPs = append(a.TopIPs, Source{IP: e.ip.String(), Prefix: PrefixOf(e.ip).String(), Count: e.n, Share: share(e.n)})
	}

	type pCount struct {
		p netip.Prefix
		n int
	}
	pl := make([]pCount, 0, len(prefixes))
	for p, n := range prefixes {
		pl = append(pl, pCount{p, n})
	}
	slices.SortFunc(pl, func(x, y pCount) int {
		if c := cmp.Compare(y.n, x.n); c != 0 {
			return c
		}
		if c := x.p.Addr().Compare(y.p.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(x.p.Bits(), y.p.Bits())
	})
	for _, e := range pl[:min(k, len(pl))] {
		a.TopPrefixes = append(a.TopPrefixes, Source{Prefix: e.p.String(), Count: e.n, Share: share(e.n)})
	}
	return a
}
