//go:build linux

package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/procnet"
	"github.com/stormguard/stormguard/internal/sandbox"
)

// readNetstat reads /proc/net/netstat of the namespace (procnet.ReadFile).
func readNetstat(nsPath string) (map[string]map[string]uint64, error) {
	b, err := procnet.ReadFile(nsPath, "netstat")
	if err != nil {
		return nil, fmt.Errorf("read netstat: %w", err)
	}
	return procnet.ParseStats(bytes.NewReader(b))
}

// labTable is the nftables table the blip scenario uses; it is separate
// from stormguard's mitigation table (inet stormguard).
const labTable = "stormguard_lab"

// blackhole drops every TCP packet to port in the namespace until the
// returned function is called (sandbox.Blackhole, in the lab's own
// table).
func blackhole(_ context.Context, nsPath string, port int) (func() error, error) {
	remove, err := sandbox.Blackhole(nsPath, port, labTable, "blip")
	if err != nil {
		return nil, fmt.Errorf("blip: %w", err)
	}
	return func() error {
		if err := remove(); err != nil {
			return fmt.Errorf("blip: %w", err)
		}
		return nil
	}, nil
}

// linkLoss drops percent of the packets entering and leaving the network
// namespace at nsPath (a client host), at random and independently in each
// direction, like a lossy link. nftables' numgen does it where netem is
// missing; the rule goes with the namespace.
func linkLoss(nsPath string, percent float64) error {
	ns, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("loss: open network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		return fmt.Errorf("loss: nftables: %w", err)
	}
	const modulus = 1_000_000
	threshold := uint32(percent / 100 * modulus)
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: labTable})
	for _, hook := range []*nftables.ChainHook{nftables.ChainHookInput, nftables.ChainHookOutput} {
		name, dev := "loss_in", expr.MetaKeyIIFNAME
		if hook == nftables.ChainHookOutput {
			name, dev = "loss_out", expr.MetaKeyOIFNAME
		}
		ch := c.AddChain(&nftables.Chain{Name: name, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: nftables.ChainPriorityFilter})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: dev, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname("lo")},
			&expr.Numgen{Register: 1, Modulus: modulus, Type: unix.NFT_NG_RANDOM},
			// numgen writes host byte order; cmp compares bytes.
			&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
			&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binaryutil.BigEndian.PutUint32(threshold)},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("loss: add %g%% drop rule in %s: %w", percent, nsPath, err)
	}
	return nil
}

// ifname is an interface name as nftables compares it (IFNAMSIZ bytes).
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}
