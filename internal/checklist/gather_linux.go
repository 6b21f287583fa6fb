//go:build linux

package checklist

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/safchain/ethtool"
	"github.com/ti-mo/conntrack"

	"github.com/stormguard/stormguard/internal/netns"
)

// conntrackTracked looks up the conntrack entry of this audit's own
// connection (one ctnetlink GET, not a table dump).
func conntrackTracked(ns string, local, remote net.Addr) (bool, error) {
	l, ok1 := local.(*net.TCPAddr)
	r, ok2 := remote.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return false, errors.New("no TCP connection to look up")
	}
	la, _ := netip.AddrFromSlice(l.IP)
	ra, _ := netip.AddrFromSlice(r.IP)
	flow := conntrack.NewFlow(syscall.IPPROTO_TCP, 0, la.Unmap(), ra.Unmap(), uint16(l.Port), uint16(r.Port), 0, 0)
	var tracked bool
	err := netns.Do(ns, func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return fmt.Errorf("open ctnetlink: %w", err)
		}
		defer c.Close()
		_, err = c.Get(flow)
		switch {
		case err == nil:
			tracked = true
			return nil
		case errors.Is(err, syscall.ENOENT) || errors.Is(err, os.ErrNotExist):
			return nil
		}
		return fmt.Errorf("look up own connection: %w", err)
	})
	if err != nil {
		return false, errors.New(describe(err))
	}
	return tracked, nil
}

// sameNetNS checks that pid exists here and lives in the namespace ns
// ("" = ours).
func sameNetNS(pid int, ns string) error {
	if ns == "" {
		ns = "/proc/self/ns/net"
	}
	want, err := os.Stat(ns)
	if err != nil {
		return err
	}
	got, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid), "ns", "net"))
	if err != nil {
		return fmt.Errorf("not visible here (another pid namespace?): %w", err)
	}
	ws, ok1 := want.Sys().(*syscall.Stat_t)
	gs, ok2 := got.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 || ws.Ino != gs.Ino || ws.Dev != gs.Dev {
		return errors.New("that pid is in another network namespace (a different server)")
	}
	return nil
}

// readNIC reads ENA allowance counters of the interfaces in stormguard's
// own namespace: the hypervisor counts on the host's NIC, not inside a
// container's namespace.
func readNIC(f *Facts) {
	ifs, err := net.Interfaces()
	if err != nil {
		f.NICErr = "list interfaces: " + err.Error()
		return
	}
	e, err := ethtool.NewEthtool()
	if err != nil {
		f.NICErr = "open ethtool socket: " + describe(err)
		return
	}
	defer e.Close()
	nic := &NICFacts{Stats: map[string]uint64{}}
	var tried []string
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			continue
		}
		tried = append(tried, i.Name)
		st, err := e.Stats(i.Name)
		if err != nil {
			continue
		}
		found := false
		for _, k := range NICCounterNames {
			if v, ok := st[k]; ok {
				nic.Stats[k] += v
				found = true
			}
		}
		if found {
			nic.Interfaces = append(nic.Interfaces, i.Name)
		}
	}
	if len(nic.Interfaces) == 0 {
		sort.Strings(tried)
		where := "no interfaces besides loopback"
		if len(tried) > 0 {
			where = "none of " + strings.Join(tried, ", ")
		}
		f.NICErr = "not available: " + where + " exposes ENA allowance counters (ethtool -S); not an AWS ENA NIC, or the driver is older than 2.2.10"
		return
	}
	f.NIC = nic
}
