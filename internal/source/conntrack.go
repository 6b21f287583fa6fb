package source

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ConntrackConfig configures the "conntrack" source: the connection
// tracking table of the target's namespace (count, max, and the per-CPU
// drop, early_drop and insert_failed counters summed).
type ConntrackConfig struct {
	// NetNS is the target's network namespace path; empty means the
	// namespace stormguard runs in.
	NetNS string
	// ProcRoot is the procfs mount (default "/proc"). A ProcRoot other
	// than /proc means fixtures, so only the proc files are read.
	ProcRoot string
	// Via chooses the backend: "" (auto: ctnetlink, falling back to
	// the proc files when it is refused), "netlink" or "proc".
	Via string
}

// ConntrackConfigFor derives the conntrack source's config from a target.
func ConntrackConfigFor(t Target) ConntrackConfig {
	return ConntrackConfig{NetNS: t.NetNS, ProcRoot: t.ProcRoot}
}

// Backends of the conntrack source, as reported in sample.Conntrack.Via.
const (
	ViaNetlink = "netlink"
	ViaProc    = "proc"
)

// reasonNoConntrack is the unavailable reason when the namespace has no
// connection tracking at all.
const reasonNoConntrack = "nf_conntrack module not loaded: no connection tracking in this namespace"

// ConntrackStat is a parsed /proc/net/stat/nf_conntrack.
type ConntrackStat struct {
	// Entries is the table size. Current kernels repeat the namespace's
	// count on every row, so it is taken from the first row, not summed.
	Entries *uint64
	// Sums holds every other column summed over the CPU rows, by header
	// name (e.g. "drop", "early_drop", "insert_failed").
	Sums map[string]uint64
	// CPUs is the number of rows (one per possible CPU).
	CPUs int
}

// ParseConntrackStat parses /proc/net/stat/nf_conntrack: a header line of
// column names, then one row of hex values per possible CPU. Columns are
// found by header name because they differ across kernels (4.x has
// "searched" and "delete_list" where current kernels have "clashres" and
// "chainlength").
//
// It stays ours rather than procfs's ConntrackStat: that one opens the
// file by path on each call (our sampling path re-reads a file opened once
// inside the target's namespace, see procnet.Files) and keeps a fixed set
// of columns, where this one keeps every column a kernel has by name.
func ParseConntrackStat(r io.Reader) (ConntrackStat, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return ConntrackStat{}, err
		}
		return ConntrackStat{}, fmt.Errorf("empty file: no header line")
	}
	header := strings.Fields(sc.Text())
	if len(header) == 0 {
		return ConntrackStat{}, fmt.Errorf("line 1: empty header")
	}
	seen := make(map[string]bool, len(header))
	for _, h := range header {
		if _, err := strconv.ParseUint(h, 16, 64); err == nil {
			return ConntrackStat{}, fmt.Errorf("line 1: header %q is a number: header line missing", truncate(h, 24))
		}
		if seen[h] {
			return ConntrackStat{}, fmt.Errorf("line 1: column %q repeated", truncate(h, 24))
		}
		seen[h] = true
	}
	st := ConntrackStat{Sums: make(map[string]uint64, len(header))}
	line := 1
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != len(header) {
			return ConntrackStat{}, fmt.Errorf("line %d: %d values for %d columns", line, len(fields), len(header))
		}
		for i, f := range fields {
			v, err := strconv.ParseUint(f, 16, 64)
			if err != nil {
				return ConntrackStat{}, fmt.Errorf("line %d: column %s: %q is not hex", line, header[i], truncate(f, 24))
			}
			if header[i] == "entries" {
				if st.Entries == nil {
					st.Entries = &v
				}
				continue
			}
			st.Sums[header[i]] += v
		}
		st.CPUs++
	}
	if err := sc.Err(); err != nil {
		return ConntrackStat{}, err
	}
	if st.CPUs == 0 {
		return ConntrackStat{}, fmt.Errorf("no CPU rows after the header")
	}
	return st, nil
}

// parseUintFile parses a sysctl file holding one decimal number.
func parseUintFile(b []byte) (uint64, error) {
	s := strings.TrimSpace(string(b))
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", truncate(s, 24))
	}
	return v, nil
}

// truncate shortens s for error messages about outside input.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
