//go:build linux

package source

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"

	"github.com/stormguard/stormguard/internal/procnet"
	"github.com/stormguard/stormguard/internal/sample"
)

// Conntrack is the "conntrack" source.
//
// Order of work per Collect:
//  1. Is nf_conntrack loaded for this namespace? The namespace's
//     nf_conntrack_count sysctl exists only then. This is checked before
//     any ctnetlink message is sent, because nfnetlink autoloads
//     nf_conntrack_netlink (and with it nf_conntrack) on the first message:
//     observing must not load the module.
//  2. Count and max from those sysctl files (one atomic read each).
//  3. drop, early_drop, insert_failed: an IPCTNL_MSG_CT_GET_STATS_CPU dump
//     over ctnetlink (needs CAP_NET_ADMIN in the namespace), summed over
//     CPUs; else /proc/net/stat/nf_conntrack summed by column name.
type Conntrack struct {
	cfg ConntrackConfig

	mu sync.Mutex
	// proc holds [count, stat, max] of the target namespace; stat and max
	// are optional (max is absent in some non-init namespaces).
	proc *procnet.Files
	// globalMax is nf_conntrack_max of stormguard's own namespace: the
	// table limit is global, so it stands in where the target namespace
	// hides it.
	globalMax *procnet.Files
	// nl is the ctnetlink socket, opened in the target namespace on
	// first use; nlNS identifies the namespace it was opened in.
	nl   *netfilter.Conn
	nlNS procnet.FileID
	// nlOff records why ctnetlink is not used in auto mode (permission
	// or not supported); such errors do not pass, so it is not retried.
	nlOff error
}

// NewConntrack prepares the conntrack source; nothing is opened until the
// first Collect.
func NewConntrack(c ConntrackConfig) (*Conntrack, error) {
	switch c.Via {
	case "", ViaNetlink, ViaProc:
	default:
		return nil, fmt.Errorf("conntrack: unknown backend %q (want %q or %q)", c.Via, ViaNetlink, ViaProc)
	}
	proc := c.ProcRoot
	if proc == "" {
		proc = "/proc"
	}
	if proc != "/proc" {
		if c.Via == ViaNetlink {
			return nil, fmt.Errorf("conntrack: backend %q cannot read a proc root (%s)", ViaNetlink, proc)
		}
		c.Via = ViaProc // fixtures: never ask the real kernel
	}
	s := &Conntrack{cfg: c}
	sys := proc + "/sys/net/netfilter/"
	paths := []string{sys + "nf_conntrack_count", proc + "/net/stat/nf_conntrack", sys + "nf_conntrack_max"}
	if c.NetNS != "" {
		// /proc/sys resolves net.* against the opener's namespace;
		// net/stat/... is relative to /proc/thread-self.
		paths = []string{sys + "nf_conntrack_count", "net/stat/nf_conntrack", sys + "nf_conntrack_max"}
	}
	s.proc = procnet.NewFiles(c.NetNS, paths, false, true, true)
	s.globalMax = procnet.NewFiles("", []string{sys + "nf_conntrack_max"}, true)
	return s, nil
}

// Name implements sample.Source.
func (*Conntrack) Name() string { return "conntrack" }

// SlowPeriod implements sample.Slow (see conntrackPeriod).
func (*Conntrack) SlowPeriod() time.Duration { return conntrackPeriod }

// Collect implements sample.Source.
func (s *Conntrack) Collect(ctx context.Context, out *sample.Sample) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	files, err := s.proc.Read()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &Unavailable{Reason: reasonNoConntrack}
		}
		return Classify("read conntrack files", err)
	}
	if s.cfg.Via != ViaProc && s.nlOff == nil {
		ct, err := s.viaNetlink(ctx)
		if err == nil {
			if err := s.countFromProc(ct, files); err != nil {
				return err
			}
			out.Conntrack = ct
			return nil
		}
		err = Classify("ctnetlink conntrack stats", err)
		if s.cfg.Via == ViaNetlink {
			return err
		}
		if errors.Is(err, ErrUnavailable) {
			s.nlOff = err
		}
		// Auto mode: this sample comes from the proc files.
	}
	ct, err := s.fromProc(files)
	if err != nil {
		return err
	}
	out.Conntrack = ct
	return nil
}

// fromProc builds the sample part from the proc files [count, stat, max].
func (s *Conntrack) fromProc(files [][]byte) (*sample.Conntrack, error) {
	ct := &sample.Conntrack{Via: ViaProc}
	if err := s.countFromProc(ct, files); err != nil {
		return nil, err
	}
	if files[1] != nil {
		st, err := ParseConntrackStat(bytes.NewReader(files[1]))
		if err != nil {
			return nil, fmt.Errorf("parse /proc/net/stat/nf_conntrack: %w", err)
		}
		ct.Drop = sumOf(st, "drop")
		ct.EarlyDrop = sumOf(st, "early_drop")
		ct.InsertFailed = sumOf(st, "insert_failed")
	}
	return ct, nil
}

// countFromProc fills count and max from the sysctl files.
func (s *Conntrack) countFromProc(ct *sample.Conntrack, files [][]byte) error {
	count, err := parseUintFile(files[0])
	if err != nil {
		return fmt.Errorf("parse nf_conntrack_count: %w", err)
	}
	ct.Count = &count
	ct.Max, err = s.maxFromProc(files[2])
	return err
}

// maxFromProc parses the namespace's nf_conntrack_max, or the global one
// when the namespace does not show it.
func (s *Conntrack) maxFromProc(nsMax []byte) (*uint64, error) {
	b := nsMax
	if b == nil {
		g, err := s.globalMax.Read()
		if err != nil {
			return nil, Classify("read nf_conntrack_max", err)
		}
		b = g[0]
	}
	if b == nil {
		return nil, nil
	}
	v, err := parseUintFile(b)
	if err != nil {
		return nil, fmt.Errorf("parse nf_conntrack_max: %w", err)
	}
	return &v, nil
}

func sumOf(st ConntrackStat, col string) *uint64 {
	if v, ok := st.Sums[col]; ok {
		return &v
	}
	return nil
}

// ctnetlink message and attribute numbers (linux/netfilter/nfnetlink_conntrack.h).
const (
	ipctnlMsgCtGetStatsCPU = 4  // IPCTNL_MSG_CT_GET_STATS_CPU
	ctaStatsInsertFailed   = 9  // CTA_STATS_INSERT_FAILED
	ctaStatsDrop           = 10 // CTA_STATS_DROP
	ctaStatsEarlyDrop      = 11 // CTA_STATS_EARLY_DROP
)

// viaNetlink dumps the per-CPU counters over ctnetlink and sums them. The
// table size is not asked for: on Linux 6.18 IPCTNL_MSG_CT_GET_STATS (what
// ti-mo/conntrack's StatsGlobal sends) gets no reply at all and the query
// blocks, so count and max come from the sysctl files read just before.
func (s *Conntrack) viaNetlink(ctx context.Context) (*sample.Conntrack, error) {
	if err := s.dialNetlink(); err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Second)
	}
	if err := s.nl.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set ctnetlink deadline: %w", err)
	}
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: ipctnlMsgCtGetStatsCPU,
		Family:      netfilter.ProtoUnspec,
		Flags:       netlink.Request | netlink.Dump,
	}, nil)
	if err != nil {
		return nil, err
	}
	msgs, err := s.nl.Query(req)
	if err != nil {
		// A timed-out dump leaves replies in the socket: start afresh.
		s.closeNetlink()
		return nil, fmt.Errorf("IPCTNL_MSG_CT_GET_STATS_CPU: %w", err)
	}
	return parseCTStatsCPU(msgs)
}

// parseCTStatsCPU sums drop, early_drop and insert_failed over the per-CPU
// messages of an IPCTNL_MSG_CT_GET_STATS_CPU dump.
func parseCTStatsCPU(msgs []netlink.Message) (*sample.Conntrack, error) {
	if len(msgs) == 0 {
		return nil, fmt.Errorf("IPCTNL_MSG_CT_GET_STATS_CPU: empty reply")
	}
	var drop, early, failed uint64
	for i, m := range msgs {
		_, attrs, err := netfilter.UnmarshalNetlink(m)
		if err != nil {
			return nil, fmt.Errorf("IPCTNL_MSG_CT_GET_STATS_CPU message %d: %w", i, err)
		}
		for _, a := range attrs {
			var sum *uint64
			switch a.Type {
			case ctaStatsDrop:
				sum = &drop
			case ctaStatsEarlyDrop:
				sum = &early
			case ctaStatsInsertFailed:
				sum = &failed
			default:
				continue
			}
			if a.Nested || len(a.Data) != 4 {
				return nil, fmt.Errorf("IPCTNL_MSG_CT_GET_STATS_CPU message %d: attribute %d has %d bytes, want 4", i, a.Type, len(a.Data))
			}
			*sum += uint64(binary.BigEndian.Uint32(a.Data))
		}
	}
	return &sample.Conntrack{Drop: &drop, EarlyDrop: &early, InsertFailed: &failed, Via: ViaNetlink}, nil
}

// dialNetlink opens the ctnetlink socket in the target namespace, again if
// the namespace at the path was replaced.
func (s *Conntrack) dialNetlink() error {
	var cfg netlink.Config
	if s.cfg.NetNS != "" {
		id, err := procnet.StatID(s.cfg.NetNS)
		if err != nil {
			s.closeNetlink()
			return fmt.Errorf("network namespace %s: %w", s.cfg.NetNS, err)
		}
		if s.nl != nil && id == s.nlNS {
			return nil
		}
		s.closeNetlink()
		f, err := os.Open(s.cfg.NetNS)
		if err != nil {
			return fmt.Errorf("open network namespace %s: %w", s.cfg.NetNS, err)
		}
		defer f.Close()
		// mdlayher/netlink creates the socket on a thread inside this
		// namespace; the socket stays bound to it.
		cfg.NetNS = int(f.Fd())
		s.nlNS = id
	} else if s.nl != nil {
		return nil
	}
	c, err := netfilter.Dial(&cfg)
	if err != nil {
		return fmt.Errorf("dial ctnetlink: %w", err)
	}
	s.nl = c
	return nil
}

func (s *Conntrack) closeNetlink() {
	if s.nl != nil {
		s.nl.Close()
		s.nl = nil
	}
}

// Close releases the netlink socket and the files of a namespace target.
func (s *Conntrack) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeNetlink()
	s.proc.Close()
	return s.globalMax.Close()
}

func openConntrack(_ context.Context, o Options) (sample.Source, error) {
	return NewConntrack(ConntrackConfigFor(o.Target))
}
