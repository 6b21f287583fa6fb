//go:build linux

package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/procnet"
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
// returned function is called. It uses an input-hook chain, which sees
// loopback traffic too.
func blackhole(ctx context.Context, nsPath string, port int) (func() error, error) {
	ns, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("blip: open network namespace %s: %w", nsPath, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("blip: nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: labTable}
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: "blip", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		ns.Close()
		return nil, fmt.Errorf("blip: add drop rule for port %s: %w", strconv.Itoa(port), err)
	}
	return func() error {
		defer ns.Close()
		c.DelTable(t)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("blip: remove table %s: %w", labTable, err)
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
