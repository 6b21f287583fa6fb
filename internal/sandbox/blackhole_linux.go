//go:build linux

package sandbox

import (
	"fmt"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Blackhole drops every TCP packet to port in the network namespace at
// nsPath, with a rule in an nftables table (inet) and chain of its own,
// named table and chain, until the returned function removes the table.
// The chain is on the input hook, which sees loopback traffic too: established connections and new SYNs
// alike get no answer, as in a network partition. The lab's blip
// scenario and the dialer's blip tests use it.
func Blackhole(nsPath string, port int, table, chain string) (remove func() error, err error) {
	ns, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("nftables in %s: %w", nsPath, err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: chain, Table: t, Type: nftables.ChainTypeFilter,
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
		return nil, fmt.Errorf("add drop rule for port %d in %s: %w", port, nsPath, err)
	}
	return func() error {
		defer ns.Close()
		c.DelTable(t)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("remove table %s: %w", table, err)
		}
		return nil
	}, nil
}
