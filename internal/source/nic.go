package source

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// NICConfig configures the "nic" source: cloud NIC allowance counters
// (AWS ENA) read with the ethtool stats ioctl, summed over the interfaces
// that carry the target's traffic.
type NICConfig struct {
	// NetNS is the network namespace whose interfaces are read; empty
	// means the namespace stormguard runs in. ENA interfaces live in the
	// host namespace: for a container target behind a veth, point NetNS
	// at the host ("") or list Interfaces explicitly.
	NetNS string
	// TargetIP is the listener's address, used to pick the interface
	// that owns it. Empty, loopback or unspecified means "every
	// interface that is up, except loopback".
	TargetIP string
	// Interfaces, when not empty, are read instead of choosing.
	Interfaces []string
}

// NICConfigFor derives the nic source's config from a target.
func NICConfigFor(t Target) NICConfig {
	return NICConfig{NetNS: t.NetNS, TargetIP: t.Addr.Host}
}

// The ENA allowance counters (`ethtool -S`, ENA driver >= 2.2.10;
// conntrack_allowance_available needs >= 2.8.1 on Nitro).
const (
	enaBwIn           = "bw_in_allowance_exceeded"
	enaBwOut          = "bw_out_allowance_exceeded"
	enaPPS            = "pps_allowance_exceeded"
	enaConntrack      = "conntrack_allowance_exceeded"
	enaLinklocal      = "linklocal_allowance_exceeded"
	enaConntrackAvail = "conntrack_allowance_available"
)

var enaCounters = []string{enaBwIn, enaBwOut, enaPPS, enaConntrack, enaLinklocal, enaConntrackAvail}

// nicLink is one network interface of the namespace.
type nicLink struct {
	Name     string
	Up       bool
	Loopback bool
	Addrs    []net.IP
}

// nicBackend is the ethtool and link access the nic source needs; the
// Linux implementation uses safchain/ethtool on a socket opened in the
// target namespace, tests use a fake backed by `ethtool -S` fixtures.
type nicBackend interface {
	// Links lists the namespace's interfaces.
	Links() ([]nicLink, error)
	// Driver returns the interface's driver name (ETHTOOL_GDRVINFO).
	Driver(ifname string) (string, error)
	// Stats returns the driver statistics (ETHTOOL_GSTATS by name).
	Stats(ifname string) (map[string]uint64, error)
	Close() error
}

// NIC is the "nic" source.
type NIC struct {
	cfg  NICConfig
	ip   net.IP
	open func() (nicBackend, error)

	mu      sync.Mutex
	backend nicBackend
	now     func() time.Time
	// absent is the last "no ENA counters here" answer, repeated until
	// recheck instead of asking the namespace again every sample; wait
	// doubles from nicRecheckMin to nicRecheckMax while the answer stays.
	absent  error
	recheck time.Time
	wait    time.Duration
}

// Backoff of the re-check while no interface has ENA counters: such
// counters come with the driver, so they rarely appear later; listing the
// links and asking each for its statistics costs ~0.2 ms, which at 10
// samples a second is a tenth of the agent's budget.
const (
	nicRecheckMin = time.Second
	nicRecheckMax = time.Minute
)

func newNIC(c NICConfig, open func() (nicBackend, error)) *NIC {
	return &NIC{cfg: c, ip: net.ParseIP(c.TargetIP), open: open, now: time.Now}
}

// Name implements sample.Source.
func (*NIC) Name() string { return "nic" }

// Collect implements sample.Source.
func (n *NIC) Collect(_ context.Context, out *sample.Sample) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.absent != nil && n.now().Before(n.recheck) {
		return n.absent
	}
	err := n.collect(out)
	var u *Unavailable
	if err == nil || !errors.As(err, &u) || n.backend == nil {
		n.absent, n.wait = nil, 0 // answered, or a failure that may pass: ask again next sample
		return err
	}
	n.wait = min(max(2*n.wait, nicRecheckMin), nicRecheckMax)
	n.absent, n.recheck = err, n.now().Add(n.wait)
	return err
}

// collect reads the counters once.
func (n *NIC) collect(out *sample.Sample) error {
	if n.backend == nil {
		b, err := n.open()
		if err != nil {
			return Classify("open ethtool socket", err)
		}
		n.backend = b
	}
	names := n.cfg.Interfaces
	if len(names) == 0 {
		links, err := n.backend.Links()
		if err != nil {
			return Classify("list network interfaces", err)
		}
		names = chooseInterfaces(links, n.ip)
		if len(names) == 0 {
			return Unavailablef("no network interface up besides loopback in the target's namespace")
		}
	}
	ifs := make([]ifaceStats, 0, len(names))
	for _, name := range names {
		st := ifaceStats{Name: name}
		st.Driver, _ = n.backend.Driver(name)
		st.Stats, st.Err = n.backend.Stats(name)
		ifs = append(ifs, st)
	}
	nic, err := sumAllowances(ifs)
	if err != nil {
		return err
	}
	out.NIC = nic
	return nil
}

// Close releases the ethtool socket.
func (n *NIC) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.backend == nil {
		return nil
	}
	err := n.backend.Close()
	n.backend = nil
	return err
}

// chooseInterfaces picks the interfaces that carry the target's traffic:
// the interface that owns the target IP when it is a specific non-loopback
// address, else every interface that is up and not loopback. Owning the
// address is the best local evidence short of per-packet tracing (a
// listener's traffic arrives on the interface its address lives on in
// almost every setup); a route lookup would not help, since the route to a
// local address is always via lo.
func chooseInterfaces(links []nicLink, ip net.IP) []string {
	if ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		for _, l := range links {
			if l.Loopback || !l.Up {
				continue
			}
			for _, a := range l.Addrs {
				if a.Equal(ip) {
					return []string{l.Name}
				}
			}
		}
	}
	var names []string
	for _, l := range links {
		if l.Up && !l.Loopback {
			names = append(names, l.Name)
		}
	}
	slices.Sort(names)
	return names
}

// ifaceStats is what the backend said about one interface.
type ifaceStats struct {
	Name   string
	Driver string
	Stats  map[string]uint64
	Err    error
}

// sumAllowances sums the ENA allowance counters over the interfaces that
// expose them. A counter is set when at least one of them has it (older
// drivers lack conntrack_allowance_available). With none exposing any,
// the signal is unavailable and the reason names each interface's driver.
func sumAllowances(ifs []ifaceStats) (*sample.NIC, error) {
	nic := &sample.NIC{}
	fields := map[string]**uint64{
		enaBwIn:           &nic.BwInAllowanceExceeded,
		enaBwOut:          &nic.BwOutAllowanceExceeded,
		enaPPS:            &nic.PPSAllowanceExceeded,
		enaConntrack:      &nic.ConntrackAllowanceExceeded,
		enaLinklocal:      &nic.LinklocalAllowanceExceeded,
		enaConntrackAvail: &nic.ConntrackAllowanceAvailable,
	}
	var seen []string
	var firstErr error
	for _, f := range ifs {
		desc := f.Name
		if f.Driver != "" {
			desc += " driver " + f.Driver
		}
		if f.Err != nil {
			if firstErr == nil {
				firstErr = f.Err
			}
			desc += " (no stats: " + f.Err.Error() + ")"
			seen = append(seen, desc)
			continue
		}
		seen = append(seen, desc)
		has := false
		for _, c := range enaCounters {
			v, ok := f.Stats[c]
			if !ok {
				continue
			}
			has = true
			p := fields[c]
			if *p == nil {
				*p = new(uint64)
			}
			**p += v
		}
		if has {
			nic.Interfaces = append(nic.Interfaces, f.Name)
		}
	}
	if len(nic.Interfaces) > 0 {
		return nic, nil
	}
	reason := "no ENA allowance counters (interfaces: " + strings.Join(seen, ", ") + ")"
	if firstErr != nil && len(ifs) == 1 {
		// One interface and it failed: keep the cause (permission…).
		return nil, Classify(reason, firstErr)
	}
	return nil, &Unavailable{Reason: reason}
}
