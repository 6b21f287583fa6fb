package procnet

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Stats is a parsed /proc/net/netstat or /proc/net/snmp: section
// ("TcpExt", "Tcp", …) → counter name → value.
type Stats map[string]map[string]uint64

// Flat returns the counters keyed "Section.Name" (e.g. "TcpExt.ListenOverflows").
func (p Stats) Flat() map[string]uint64 {
	out := map[string]uint64{}
	for sec, m := range p {
		for name, v := range m {
			out[sec+"."+name] = v
		}
	}
	return out
}

// ParseStats parses the "Section: Name Name…" / "Section: value value…"
// line pairs of /proc/net/netstat and /proc/net/snmp by name, so the set
// and order of counters may differ between kernels. Values that are not
// unsigned integers (Tcp MaxConn is -1) are skipped: they are not
// counters. Structural damage (a header without its value line, a count
// mismatch, a value that is not a number) is an error naming the line.
func ParseStats(r io.Reader) (Stats, error) { return ParseStatsSections(r) }

// ParseStatsSections is ParseStats keeping only the named sections (none
// named: all). The agent reads two of netstat's and snmp's ~20 sections
// every sample; splitting and converting only those halves the parse. The
// line pairing is still checked for every section; counts and numbers
// only for the sections kept.
func ParseStatsSections(r io.Reader, sections ...string) (Stats, error) {
	out := Stats{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 8*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		header := sc.Text()
		if strings.TrimSpace(header) == "" {
			continue
		}
		hsec, hnames, ok := strings.Cut(header, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: no \"Section:\" prefix", line)
		}
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("line %d: %s header without a value line", line, hsec)
		}
		line++
		vsec, vals, ok := strings.Cut(sc.Text(), ":")
		if !ok || vsec != hsec {
			return nil, fmt.Errorf("line %d: want %s values, got %q", line, hsec, truncate(sc.Text(), 40))
		}
		if len(sections) > 0 && !slices.Contains(sections, hsec) {
			continue
		}
		names, values := strings.Fields(hnames), strings.Fields(vals)
		if len(names) != len(values) {
			return nil, fmt.Errorf("line %d: %s has %d names but %d values", line, hsec, len(names), len(values))
		}
		if _, dup := out[hsec]; dup {
			// A kernel never repeats a section; keep the first.
			continue
		}
		sec := make(map[string]uint64, len(names))
		for i, name := range names {
			v, err := strconv.ParseUint(values[i], 10, 64)
			if err != nil {
				if _, ierr := strconv.ParseInt(values[i], 10, 64); ierr == nil {
					continue // negative: a setting such as MaxConn, not a counter
				}
				return nil, fmt.Errorf("line %d: %s %s: value %q is not a number", line, hsec, name, truncate(values[i], 24))
			}
			sec[name] = v
		}
		out[hsec] = sec
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// truncate shortens s for error messages about outside input.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
