package checklist

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/stormguard/stormguard/internal/clientlist"
	"github.com/stormguard/stormguard/internal/procnet"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// ParseLimitsNoFile returns the soft "Max open files" limit from the
// contents of /proc/PID/limits (Unlimited for "unlimited").
func ParseLimitsNoFile(s string) (uint64, error) {
	for _, line := range strings.Split(s, "\n") {
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) < 1 {
			break
		}
		if fs[0] == "unlimited" {
			return Unlimited, nil
		}
		n, err := strconv.ParseUint(fs[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse Max open files %q: %w", fs[0], err)
		}
		return n, nil
	}
	return 0, errors.New("no \"Max open files\" line")
}

// ParseNetstat parses /proc/net/netstat or /proc/net/snmp: pairs of lines
// "Prefix: Name1 Name2 …" and "Prefix: v1 v2 …". Keys are "Prefix.Name".
// Values that are not unsigned numbers (snmp's negative MaxConn) are left
// out. Only names in want are kept when want is non-empty.
func ParseNetstat(r io.Reader, want []string) (map[string]uint64, error) {
	// One parser of these files for the whole project (procnet's).
	st, err := procnet.ParseStats(r)
	if err != nil {
		return nil, err
	}
	all := st.Flat()
	if len(want) == 0 {
		return all, nil
	}
	out := make(map[string]uint64, len(want))
	for _, w := range want {
		if v, ok := all[w]; ok {
			out[w] = v
		}
	}
	return out, nil
}

// ParseClientList parses CLIENT LIST output (clientlist.Fields)
// into the fields the client rules use. Lines without an addr field are
// skipped.
func ParseClientList(s string) []ClientConn {
	out := []ClientConn{}
	rows, _ := clientlist.Fields(s)
	for _, m := range rows {
		a, ok := m["addr"]
		if !ok {
			continue
		}
		c := ClientConn{ID: m["id"], IP: valkeyconn.Host(a), Name: m["name"], LibName: m["lib-name"],
			LibVer: m["lib-ver"], User: m["user"], Flags: m["flags"], TotCmds: -1}
		c.Age, _ = strconv.ParseInt(m["age"], 10, 64)
		c.Idle, _ = strconv.ParseInt(m["idle"], 10, 64)
		if n, err := strconv.ParseInt(m["tot-cmds"], 10, 64); err == nil {
			c.TotCmds = n
		}
		out = append(out, c)
	}
	return out
}
