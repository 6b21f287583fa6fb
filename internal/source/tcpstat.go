package source

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/stormguard/stormguard/internal/sample"
)

// TCPStatConfig configures the "tcp" source: the namespace-wide TCP
// counters of /proc/net/netstat (TcpExt) and /proc/net/snmp (Tcp).
type TCPStatConfig struct {
	// NetNS is the target's network namespace path; empty means the
	// namespace stormguard runs in (then ProcRoot/net/... is read).
	NetNS string
	// ProcRoot is the procfs mount (default "/proc"); tests point it at a
	// fixture tree such as testdata/proc-6.18.
	ProcRoot string
}

// TCPStatConfigFor derives the tcp source's config from a target.
func TCPStatConfigFor(t Target) TCPStatConfig {
	return TCPStatConfig{NetNS: t.NetNS, ProcRoot: t.ProcRoot}
}

// TCPStat is the "tcp" source.
type TCPStat struct {
	files *procFiles
}

// NewTCPStat prepares the tcp source. It opens nothing: files are opened on
// the first Collect, so a namespace that appears later still works.
func NewTCPStat(c TCPStatConfig) *TCPStat {
	proc := c.ProcRoot
	if proc == "" {
		proc = "/proc"
	}
	pf := &procFiles{nsPath: c.NetNS}
	if c.NetNS == "" {
		pf.paths = []string{proc + "/net/netstat", proc + "/net/snmp"}
	} else {
		// Inside the namespace, the calling thread's own view: opened
		// once by netns.Do and re-read with pread afterwards.
		pf.paths = []string{"net/netstat", "net/snmp"}
	}
	return &TCPStat{files: pf}
}

// Name implements sample.Source.
func (*TCPStat) Name() string { return "tcp" }

// Collect implements sample.Source.
func (s *TCPStat) Collect(_ context.Context, out *sample.Sample) error {
	tcp, err := s.fetch()
	if err != nil {
		return err
	}
	out.TCP = tcp
	return nil
}

// fetch reads both files and parses them.
func (s *TCPStat) fetch() (*sample.TCP, error) {
	bufs, err := s.files.read()
	if err != nil {
		return nil, Classify("read TCP counters (/proc/net/netstat, snmp)", err)
	}
	tcp, err := ParseTCPStats(bytes.NewReader(bufs[0]), bytes.NewReader(bufs[1]))
	if err != nil {
		return nil, fmt.Errorf("parse TCP counters: %w", err)
	}
	return tcp, nil
}

// Close releases the files kept open for a namespace target.
func (s *TCPStat) Close() error { return s.files.Close() }

// ProcNetStats is a parsed /proc/net/netstat or /proc/net/snmp: section
// ("TcpExt", "Tcp", …) → counter name → value.
type ProcNetStats map[string]map[string]uint64

// Flat returns the counters keyed "Section.Name" (e.g. "TcpExt.ListenOverflows").
func (p ProcNetStats) Flat() map[string]uint64 {
	out := map[string]uint64{}
	for sec, m := range p {
		for name, v := range m {
			out[sec+"."+name] = v
		}
	}
	return out
}

// ParseProcNetStats parses the "Section: Name Name…" / "Section: value
// value…" line pairs of /proc/net/netstat and /proc/net/snmp by name, so the
// set and order of counters may differ between kernels. Values that are not
// unsigned integers (Tcp MaxConn is -1) are skipped: they are not counters.
// Structural damage (a header without its value line, a count mismatch, a
// value that is not a number) is an error naming the line.
func ParseProcNetStats(r io.Reader) (ProcNetStats, error) {
	out := ProcNetStats{}
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

// ParseTCPStats parses /proc/net/netstat and /proc/net/snmp into the TCP
// counters a storm shows in. A counter this kernel does not have stays nil.
func ParseTCPStats(netstat, snmp io.Reader) (*sample.TCP, error) {
	ns, err := ParseProcNetStats(netstat)
	if err != nil {
		return nil, fmt.Errorf("netstat: %w", err)
	}
	sn, err := ParseProcNetStats(snmp)
	if err != nil {
		return nil, fmt.Errorf("snmp: %w", err)
	}
	return tcpFromStats(ns, sn)
}

// tcpFromStats maps counters by name into sample.TCP.
func tcpFromStats(netstat, snmp ProcNetStats) (*sample.TCP, error) {
	ext, tcp := netstat["TcpExt"], snmp["Tcp"]
	if ext == nil && tcp == nil {
		return nil, fmt.Errorf("neither a TcpExt section in netstat nor a Tcp section in snmp")
	}
	get := func(sec map[string]uint64, name string) *uint64 {
		if v, ok := sec[name]; ok {
			return &v
		}
		return nil
	}
	return &sample.TCP{
		ListenOverflows:   get(ext, "ListenOverflows"),
		ListenDrops:       get(ext, "ListenDrops"),
		ReqQFullDrop:      get(ext, "TCPReqQFullDrop"),
		ReqQFullDoCookies: get(ext, "TCPReqQFullDoCookies"),
		SyncookiesSent:    get(ext, "SyncookiesSent"),
		SyncookiesRecv:    get(ext, "SyncookiesRecv"),
		SyncookiesFailed:  get(ext, "SyncookiesFailed"),
		SynRetrans:        get(ext, "TCPSynRetrans"),
		PassiveOpens:      get(tcp, "PassiveOpens"),
		ActiveOpens:       get(tcp, "ActiveOpens"),
		AttemptFails:      get(tcp, "AttemptFails"),
		EstabResets:       get(tcp, "EstabResets"),
		CurrEstab:         get(tcp, "CurrEstab"),
	}, nil
}

// truncate shortens s for error messages about outside input.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func openTCPStat(_ context.Context, o Options) (sample.Source, error) {
	return NewTCPStat(TCPStatConfigFor(o.Target)), nil
}
