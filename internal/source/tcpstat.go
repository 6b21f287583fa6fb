package source

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/stormguard/stormguard/internal/procnet"
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
	files *procnet.Files
	// perListener, when set, reports whether the eBPF source counts the
	// watched listener's own overflows (see SlowPeriod); set once by
	// Open before the first sample.
	perListener func() bool
}

// NewTCPStat prepares the tcp source. It opens nothing: files are opened on
// the first Collect, so a namespace that appears later still works.
func NewTCPStat(c TCPStatConfig) *TCPStat {
	proc := c.ProcRoot
	if proc == "" {
		proc = "/proc"
	}
	paths := []string{proc + "/net/netstat", proc + "/net/snmp"}
	if c.NetNS != "" {
		// Inside the namespace, the calling thread's own view: opened
		// once by netns.Do and re-read with pread afterwards.
		paths = []string{"net/netstat", "net/snmp"}
	}
	return &TCPStat{files: procnet.NewFiles(c.NetNS, paths)}
}

// Name implements sample.Source.
func (*TCPStat) Name() string { return "tcp" }

// Prompt implements sample.Prompt: kernel state only, read in about a
// millisecond, so a wake-up's early sample waits for it.
func (*TCPStat) Prompt() bool { return true }

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
	bufs, err := s.files.Read()
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

// ParseTCPStats parses /proc/net/netstat and /proc/net/snmp into the TCP
// counters a storm shows in. A counter this kernel does not have stays nil.
func ParseTCPStats(netstat, snmp io.Reader) (*sample.TCP, error) {
	ns, err := procnet.ParseStatsSections(netstat, "TcpExt")
	if err != nil {
		return nil, fmt.Errorf("netstat: %w", err)
	}
	sn, err := procnet.ParseStatsSections(snmp, "Tcp")
	if err != nil {
		return nil, fmt.Errorf("snmp: %w", err)
	}
	return tcpFromStats(ns, sn)
}

// tcpFromStats maps counters by name into sample.TCP.
func tcpFromStats(netstat, snmp procnet.Stats) (*sample.TCP, error) {
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

func openTCPStat(_ context.Context, o Options) (sample.Source, error) {
	return NewTCPStat(TCPStatConfigFor(o.Target)), nil
}
