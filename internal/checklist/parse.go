package checklist

import (
	"errors"
	"fmt"
	"github.com/stormguard/stormguard/internal/signal"
	"io"
	"strconv"
	"strings"
)

// ParseInfo parses INFO output (key:value lines, # section headers).
func ParseInfo(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" {
			continue
		}
		m[k] = v
	}
	return m
}

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
	// One parser of these files for the whole project: the tcp source's.
	st, err := signal.ParseProcNetStats(r)
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

// ListenInodes returns the socket inodes of TCP listeners on port in the
// contents of /proc/net/tcp or /proc/net/tcp6.
func ListenInodes(s string, port int) []uint64 {
	var out []uint64
	for _, line := range strings.Split(s, "\n") {
		fs := strings.Fields(line)
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(fs) < 10 || fs[3] != "0A" {
			continue
		}
		_, hexPort, ok := strings.Cut(fs[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		ino, err := strconv.ParseUint(fs[9], 10, 64)
		if err != nil || ino == 0 {
			continue
		}
		out = append(out, ino)
	}
	return out
}

// ParseClientList parses CLIENT LIST output. Lines without an addr field
// are skipped.
func ParseClientList(s string) []ClientConn {
	out := []ClientConn{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		c := ClientConn{TotCmds: -1}
		seen := false
		for _, kv := range strings.Fields(line) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			switch k {
			case "id":
				c.ID = v
			case "addr":
				c.IP, seen = hostOf(v), true
			case "name":
				c.Name = v
			case "lib-name":
				c.LibName = v
			case "lib-ver":
				c.LibVer = v
			case "user":
				c.User = v
			case "flags":
				c.Flags = v
			case "age":
				c.Age, _ = strconv.ParseInt(v, 10, 64)
			case "idle":
				c.Idle, _ = strconv.ParseInt(v, 10, 64)
			case "tot-cmds":
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					c.TotCmds = n
				}
			}
		}
		if seen {
			out = append(out, c)
		}
	}
	return out
}

// hostOf strips the port from a CLIENT LIST addr (ip:port, [v6]:port,
// v6:port or a unix socket path).
func hostOf(a string) string {
	i := strings.LastIndex(a, ":")
	if i <= 0 {
		return a
	}
	return strings.Trim(a[:i], "[]")
}
