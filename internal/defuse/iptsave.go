package defuse

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// iptRule is one rule of iptables-save output.
type iptRule struct {
	Table string
	Chain string
	// Line is the rule as iptables-save printed it ("-A INPUT ...").
	Line string
	Args []string
}

// iptSave is parsed iptables-save output: chain policies and rules by
// table.
type iptSave struct {
	// Policies maps "table/chain" to the built-in chain's policy.
	Policies map[string]string
	Rules    []iptRule
}

// parseIptablesSave parses iptables-save (or ip6tables-save) output:
// "*table", ":CHAIN POLICY [p:b]", "-A CHAIN args", "COMMIT", comments.
// Legacy iptables has no other interface a program can read. Arguments
// are split the way iptables-save quotes them ("..." with \" escapes).
func parseIptablesSave(s string) (iptSave, error) {
	out := iptSave{Policies: map[string]string{}}
	table := ""
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			table = strings.TrimSpace(line[1:])
			if table == "" {
				return out, fmt.Errorf("iptables-save line %d: empty table name", n)
			}
		case line == "COMMIT":
			table = ""
		case strings.HasPrefix(line, ":"):
			if table == "" {
				return out, fmt.Errorf("iptables-save line %d: chain outside a table", n)
			}
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return out, fmt.Errorf("iptables-save line %d: malformed chain %q", n, line)
			}
			out.Policies[table+"/"+f[0]] = f[1]
		case strings.HasPrefix(line, "-A ") || strings.HasPrefix(line, "-I "):
			if table == "" {
				return out, fmt.Errorf("iptables-save line %d: rule outside a table", n)
			}
			args, err := splitIptArgs(line)
			if err != nil {
				return out, fmt.Errorf("iptables-save line %d: %w", n, err)
			}
			if len(args) < 2 || args[1] == "" {
				return out, fmt.Errorf("iptables-save line %d: rule without a chain", n)
			}
			out.Rules = append(out.Rules, iptRule{Table: table, Chain: args[1], Line: line, Args: args[2:]})
		default:
			return out, fmt.Errorf("iptables-save line %d: unexpected %q", n, truncate(line, 60))
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read iptables-save output: %w", err)
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// splitIptArgs splits a rule line on spaces, honouring "..." quoting.
func splitIptArgs(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	in, have := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case in && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			in, have = !in, true
		case !in && (c == ' ' || c == '\t'):
			if have || cur.Len() > 0 {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
		}
	}
	if in {
		return nil, fmt.Errorf("unterminated quote in %q", truncate(line, 60))
	}
	if have || cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args, nil
}

// iptHooks are the built-in chains the port's packets traverse on a host
// that runs Valkey (FORWARD never sees them).
var iptHooks = map[string]bool{"PREROUTING": true, "INPUT": true, "OUTPUT": true, "POSTROUTING": true}

// legacyBlockers lists the rules of parsed iptables-save output that would
// break, or stop working, if the port's packets were untracked: NAT, and
// any match or target that reads conntrack state, in a chain that sees the
// port's packets. Each reason quotes the rule exactly.
func legacyBlockers(save iptSave, port int, cmd string) []string {
	var why []string
	for _, r := range save.Rules {
		if !iptHooks[r.Chain] && isBuiltinChain(r.Chain) {
			continue // FORWARD
		}
		if !iptSeesPort(r.Args, port) {
			continue
		}
		reason := ""
		if r.Table == "nat" {
			reason = "NAT needs conntrack"
		} else if d := iptTrackingUse(r.Args); d != "" {
			reason = "it uses " + d + ", which sees untracked packets as UNTRACKED"
		}
		if reason != "" {
			why = append(why, fmt.Sprintf("%s -t %s: %q (%s)", cmd, r.Table, r.Line, reason))
		}
	}
	return why
}

func isBuiltinChain(c string) bool { return iptHooks[c] || c == "FORWARD" }

// iptTrackingUse names the conntrack-dependent part of a rule, or "".
func iptTrackingUse(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		a, v := args[i], args[i+1]
		switch {
		case a == "-m" || a == "--match":
			switch v {
			case "conntrack", "state", "connmark", "connlimit", "connbytes", "helper", "conntrack-zone":
				return "-m " + v
			}
		case a == "-j" || a == "--jump" || a == "-g" || a == "--goto":
			switch v {
			case "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "NETMAP", "CONNMARK", "CONNSECMARK":
				return "-j " + v
			}
		}
	}
	return ""
}

// iptSeesPort reports whether a rule can match the port's TCP packets: it
// does not when it is limited to another protocol or names a destination
// port set without the port (another service's rule).
func iptSeesPort(args []string, port int) bool {
	for i := 0; i+1 < len(args); i++ {
		a, v := args[i], args[i+1]
		neg := i > 0 && args[i-1] == "!"
		switch a {
		case "-p", "--protocol":
			p := strings.ToLower(v)
			if !neg && p != "tcp" && p != "6" && p != "all" && p != "0" {
				return false
			}
		case "--dport", "--destination-port", "--dports", "--destination-ports":
			if !neg && !portListHas(v, port) {
				return false
			}
		}
	}
	return true
}

// portListHas reports whether "6379", "1:1024" or "80,443,6000:7000"
// includes port. Unparsable lists count as including it.
func portListHas(list string, port int) bool {
	for _, p := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(p, ":")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return true
		}
		b := a
		if isRange {
			if hi == "" {
				b = 65535
			} else if b, err = strconv.Atoi(hi); err != nil {
				return true
			}
		}
		if port >= a && port <= b {
			return true
		}
	}
	return false
}
