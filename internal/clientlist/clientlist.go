package clientlist

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Client is one line of CLIENT LIST, reduced to what grouping needs.
type Client struct {
	ID      uint64
	Addr    string     // addr= as sent ("10.0.3.7:52555", "[::1]:6000", "/tmp/v.sock:0")
	IP      netip.Addr // the address part of Addr; invalid for unix sockets
	Name    string
	LibName string
	LibVer  string
	Flags   string
	Cmd     string
	// Age and Idle are seconds; -1 when the field is missing or not a number.
	Age, Idle int64
}

// MaxLineFields bounds the fields read from one line: real lines have ~35,
// and a reply that is not CLIENT LIST must not cost unbounded work.
const MaxLineFields = 128

// Fields splits a CLIENT LIST reply into one key → value map per client:
// space-separated key=value fields (Valkey refuses spaces in names and
// lib-name/lib-ver, so a space always separates fields; a multi-word cmd
// keeps only its first word). At most MaxLineFields fields are read per
// line. A line without any key=value field is skipped and reported as the
// error (the first one), with the other lines still returned: the reply may
// not be CLIENT LIST at all, which strict callers (Parse) refuse and
// tolerant ones (check, defuse) survive. This is the project's one CLIENT
// LIST tokenizer.
func Fields(text string) ([]map[string]string, error) {
	text = strings.TrimPrefix(text, "txt:")
	var out []map[string]string
	var first error
	lineNo := 0
	for len(text) > 0 {
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, ""
		}
		lineNo++
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		m := make(map[string]string, 32)
		for f := range strings.FieldsSeq(line) {
			if len(m) >= MaxLineFields {
				break
			}
			k, v, ok := strings.Cut(f, "=")
			if !ok || k == "" {
				continue
			}
			m[k] = v
		}
		if len(m) == 0 {
			if first == nil {
				first = fmt.Errorf("CLIENT LIST line %d: no key=value field: %.40q", lineNo, line)
			}
			continue
		}
		out = append(out, m)
	}
	return out, first
}

// Parse parses a CLIENT LIST reply into Clients. Unknown fields are
// ignored; a missing age or idle is -1.
func Parse(text string) ([]Client, error) {
	rows, err := Fields(text)
	if err != nil {
		return nil, err
	}
	out := make([]Client, 0, len(rows))
	for _, m := range rows {
		c := Client{Age: -1, Idle: -1, Addr: m["addr"], Name: m["name"], LibName: m["lib-name"],
			LibVer: m["lib-ver"], Flags: m["flags"], Cmd: m["cmd"]}
		c.ID, _ = strconv.ParseUint(m["id"], 10, 64)
		if c.Addr != "" {
			c.IP = hostIP(c.Addr)
		}
		if v, ok := m["age"]; ok {
			c.Age = seconds(v)
		}
		if v, ok := m["idle"]; ok {
			c.Idle = seconds(v)
		}
		out = append(out, c)
	}
	return out, nil
}

func seconds(v string) int64 {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// hostIP extracts the IP of an addr= field: "ip:port" for IPv4,
// "[ip]:port" for IPv6 (some servers omit the brackets; the last colon
// then separates the port). Unix sockets give an invalid Addr.
func hostIP(v string) netip.Addr {
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	i := strings.LastIndexByte(v, ':')
	if i <= 0 {
		return netip.Addr{}
	}
	ip, err := netip.ParseAddr(strings.Trim(v[:i], "[]"))
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap().WithZone("")
}

// Group is the clients sharing one library or one source IP.
type Group struct {
	// Library is "lib-name lib-ver" ("(unset)" when the client never sent
	// CLIENT SETINFO); IP is the source address. One of them is set.
	Library string `json:"library,omitempty"`
	IP      string `json:"ip,omitempty"`
	Count   int    `json:"count"`
	// Share is Count over all clients grouped.
	Share float64 `json:"share"`
	// Young counts connections younger than the snapshot's YoungAge;
	// YoungShare is Young/Count, the group's churn.
	Young      int     `json:"young"`
	YoungShare float64 `json:"young_share"`
	// MedianAgeS and MedianIdleS are medians over the group in seconds
	// (null when no client reported them).
	MedianAgeS  *int64 `json:"median_age_s"`
	MedianIdleS *int64 `json:"median_idle_s"`
	// TopLibrary is, on IP groups, the library most of the IP's clients
	// use (ties by name), and TopLibraryCount how many of them, so a
	// source address can be named by library.
	TopLibrary      string `json:"top_library,omitempty"`
	TopLibraryCount int    `json:"top_library_count,omitempty"`
}

// Snapshot is one grouped CLIENT LIST.
type Snapshot struct {
	// Time is when the list was taken.
	Time time.Time `json:"time"`
	// Clients counts the clients grouped (stormguard's own connection
	// excluded); Young those younger than YoungAgeS seconds.
	Clients   int   `json:"clients"`
	Young     int   `json:"young"`
	YoungAgeS int64 `json:"young_age_s"`
	// Libraries and IPs are the largest groups, largest first (ties by
	// name), at most TopK each; Other* count the clients in the rest.
	Libraries      []Group `json:"libraries"`
	IPs            []Group `json:"ips"`
	DistinctLibs   int     `json:"distinct_libraries"`
	DistinctIPs    int     `json:"distinct_ips"`
	OtherLibraries int     `json:"other_libraries_clients"`
	OtherIPs       int     `json:"other_ips_clients"`
}

// Unset is the library name of clients that never sent CLIENT SETINFO.
const Unset = "(unset)"

// LibraryOf is the library key of a client: "lib-name lib-ver".
func LibraryOf(c Client) string {
	switch {
	case c.LibName == "" && c.LibVer == "":
		return Unset
	case c.LibVer == "":
		return c.LibName
	case c.LibName == "":
		return Unset + " " + c.LibVer
	}
	return c.LibName + " " + c.LibVer
}

// GroupClients groups clients by library and by IP, keeping the topK largest
// groups of each (topK ≤ 0 means 10). A client whose age is below youngAge
// counts as young. Unix-socket clients group under IP "unix".
func GroupClients(clients []Client, at time.Time, youngAge time.Duration, topK int) Snapshot {
	if topK <= 0 {
		topK = 10
	}
	ys := int64(youngAge / time.Second)
	s := Snapshot{Time: at, Clients: len(clients), YoungAgeS: ys, Libraries: []Group{}, IPs: []Group{}}
	libs := map[string][]int{}
	ips := map[string][]int{}
	for i, c := range clients {
		if c.Age >= 0 && c.Age < ys {
			s.Young++
		}
		libs[LibraryOf(c)] = append(libs[LibraryOf(c)], i)
		ip := "unix"
		if c.IP.IsValid() {
			ip = c.IP.String()
		}
		ips[ip] = append(ips[ip], i)
	}
	s.DistinctLibs, s.DistinctIPs = len(libs), len(ips)
	var otherL, otherI int
	s.Libraries, otherL = top(libs, clients, ys, topK, func(g *Group, k string) { g.Library = k })
	s.IPs, otherI = top(ips, clients, ys, topK, func(g *Group, k string) {
		g.IP = k
		g.TopLibrary, g.TopLibraryCount = mostCommonLibrary(clients, ips[k])
	})
	s.OtherLibraries, s.OtherIPs = otherL, otherI
	return s
}

// top turns key → client indexes into the k largest groups and the number
// of clients left over.
func top(m map[string][]int, clients []Client, youngS int64, k int, name func(*Group, string)) ([]Group, int) {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(len(m[b]), len(m[a])); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	out := make([]Group, 0, min(k, len(keys)))
	other := 0
	for i, key := range keys {
		idx := m[key]
		if i >= k {
			other += len(idx)
			continue
		}
		g := Group{Count: len(idx), Share: float64(len(idx)) / float64(len(clients))}
		name(&g, key)
		var ages, idles []int64
		for _, j := range idx {
			c := clients[j]
			if c.Age >= 0 {
				ages = append(ages, c.Age)
				if c.Age < youngS {
					g.Young++
				}
			}
			if c.Idle >= 0 {
				idles = append(idles, c.Idle)
			}
		}
		g.YoungShare = float64(g.Young) / float64(g.Count)
		g.MedianAgeS, g.MedianIdleS = median(ages), median(idles)
		out = append(out, g)
	}
	return out, other
}

func median(v []int64) *int64 {
	if len(v) == 0 {
		return nil
	}
	slices.Sort(v)
	m := v[len(v)/2]
	return &m
}

// mostCommonLibrary returns the library most of the given clients use and
// how many use it.
func mostCommonLibrary(clients []Client, idx []int) (string, int) {
	n := map[string]int{}
	best, bestN := "", 0
	for _, j := range idx {
		l := LibraryOf(clients[j])
		n[l]++
		if c := n[l]; c > bestN || c == bestN && l < best {
			best, bestN = l, c
		}
	}
	return best, bestN
}

// ReplicationLink reports whether the client is a replication connection:
// flags S (a replica connected to this server) or M (this replica's link to
// its primary). They are not application clients.
func (c Client) ReplicationLink() bool {
	return strings.ContainsAny(c.Flags, "SM")
}
