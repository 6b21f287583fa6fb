//go:build linux

package source

import (
	"context"
	"net"

	"github.com/safchain/ethtool"

	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sample"
)

// NewNIC prepares the nic source. The ethtool socket is opened on the first
// Collect, inside the configured namespace: SIOCETHTOOL resolves interface
// names in the namespace of the socket, so the socket stays bound there.
func NewNIC(c NICConfig) *NIC {
	return newNIC(c, func() (nicBackend, error) { return openEthtoolBackend(c.NetNS) })
}

func openNIC(_ context.Context, o Options) (sample.Source, error) {
	return NewNIC(NICConfigFor(o.Target)), nil
}

// ethtoolBackend is the real nicBackend.
type ethtoolBackend struct {
	nsPath string
	et     *ethtool.Ethtool
}

func openEthtoolBackend(nsPath string) (nicBackend, error) {
	var et *ethtool.Ethtool
	err := netns.Do(nsPath, func() error {
		var err error
		et, err = ethtool.NewEthtool()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &ethtoolBackend{nsPath: nsPath, et: et}, nil
}

// Links lists interfaces with the rtnetlink socket the net package opens;
// that socket is created inside the namespace, so the listing is the
// namespace's.
func (b *ethtoolBackend) Links() ([]nicLink, error) {
	var links []nicLink
	err := netns.Do(b.nsPath, func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, ifc := range ifs {
			l := nicLink{Name: ifc.Name, Up: ifc.Flags&net.FlagUp != 0, Loopback: ifc.Flags&net.FlagLoopback != 0}
			addrs, err := ifc.Addrs()
			if err == nil {
				for _, a := range addrs {
					if ipn, ok := a.(*net.IPNet); ok {
						l.Addrs = append(l.Addrs, ipn.IP)
					}
				}
			}
			links = append(links, l)
		}
		return nil
	})
	return links, err
}

func (b *ethtoolBackend) Driver(ifname string) (string, error) { return b.et.DriverName(ifname) }

func (b *ethtoolBackend) Stats(ifname string) (map[string]uint64, error) { return b.et.Stats(ifname) }

func (b *ethtoolBackend) Close() error {
	b.et.Close()
	return nil
}
