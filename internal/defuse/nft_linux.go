//go:build linux

package defuse

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nftClient talks nftables over netlink in one network namespace.
type nftClient struct {
	c     *nftables.Conn
	close func()
}

// openNFT opens an nftables connection in the namespace at nsPath ("" =
// our own). dial, when non-nil, replaces the kernel (unit tests).
func openNFT(nsPath string, dial func([]netlink.Message) ([]netlink.Message, error)) (*nftClient, error) {
	if dial != nil {
		c, err := nftables.New(nftables.WithTestDial(dial))
		if err != nil {
			return nil, err
		}
		return &nftClient{c: c, close: func() {}}, nil
	}
	opts := []nftables.ConnOption{nftables.AsLasting()}
	var f *os.File
	if nsPath != "" {
		var err error
		if f, err = os.Open(nsPath); err != nil {
			return nil, fmt.Errorf("open network namespace %s: %w", nsPath, err)
		}
		opts = append(opts, nftables.WithNetNSFd(int(f.Fd())))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	return &nftClient{c: c, close: func() {
		_ = c.CloseLasting()
		if f != nil {
			f.Close()
		}
	}}, nil
}

func (n *nftClient) Close() { n.close() }

func table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

func baseChain(t *nftables.Table, name string) *nftables.Chain {
	hook := nftables.ChainHookPrerouting
	if name == chainOutput {
		hook = nftables.ChainHookOutput
	}
	policy := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name: name, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: hook, Priority: nftables.ChainPriorityRef(rawPriority), Policy: &policy,
	}
}

var setTypes = map[string]nftables.SetDatatype{
	"ipv4_addr":    nftables.TypeIPAddr,
	"ipv6_addr":    nftables.TypeIP6Addr,
	"inet_service": nftables.TypeInetService,
}

// queue adds spec's objects to the connection's batch (sent by Flush, as
// one transaction: all or nothing).
func (n *nftClient) queue(spec nftSpec) error {
	t := n.c.AddTable(table())
	chains := map[string]*nftables.Chain{chainPrerouting: n.c.AddChain(baseChain(t, chainPrerouting))}
	if spec.Output {
		chains[chainOutput] = n.c.AddChain(baseChain(t, chainOutput))
	}
	sets := map[string]*nftables.Set{}
	for i, s := range spec.Sets {
		// Set IDs name sets within one transaction; fixing them (instead of
		// the library's process-wide counter) keeps the batch reproducible.
		set := &nftables.Set{Table: t, ID: uint32(i + 1), Name: s.Name, KeyType: setTypes[s.Type], HasTimeout: true}
		var elems []nftables.SetElement
		if s.Dynamic {
			set.Dynamic, set.Timeout, set.Size = true, s.Timeout, s.Size
		} else {
			set.KeyByteOrder = binaryutil.BigEndian
			elems = []nftables.SetElement{{Key: binaryutil.BigEndian.PutUint16(s.Port), Timeout: s.ElemTimeout}}
		}
		if err := n.c.AddSet(set, elems); err != nil {
			return fmt.Errorf("queue nftables set %s: %w", s.Name, err)
		}
		sets[s.Name] = set
	}
	for _, r := range spec.Rules {
		ex, err := ruleExprs(r, sets)
		if err != nil {
			return err
		}
		n.c.AddRule(&nftables.Rule{
			Table: t, Chain: chains[r.Chain], Exprs: ex,
			UserData: userdata.AppendString(nil, userdata.TypeComment, r.Comment),
		})
	}
	return nil
}

// ruleExprs turns a rule into nftables expressions, the same sequence nft
// itself generates for the rendered text.
func ruleExprs(r nftRule, sets map[string]*nftables.Set) ([]expr.Any, error) {
	var ex []expr.Any
	switch r.NFProto {
	case 4:
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}})
	case 6:
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}})
	}
	arm, ok := sets[r.ArmSet]
	if !ok {
		return nil, fmt.Errorf("rule refers to unknown set %s", r.ArmSet)
	}
	portOff := uint32(2) // dport
	if r.PortDir == "sport" {
		portOff = 0
	}
	ex = append(ex,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: portOff, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: arm.Name, SetID: arm.ID})
	if r.SynOnly {
		// tcp flags & (syn|ack) == syn: a connection-opening SYN only,
		// never a packet of an established connection.
		ex = append(ex,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x12}, Xor: []byte{0x00}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}})
	}
	if r.NotLoopback {
		// iifname != "lo": nft compares the whole IFNAMSIZ buffer.
		name := make([]byte, unix.IFNAMSIZ)
		copy(name, "lo")
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: name})
	}
	if r.Limit != nil {
		lim, err := limitExpr(*r.Limit)
		if err != nil {
			return nil, err
		}
		if r.SrcSet != "" {
			src, ok := sets[r.SrcSet]
			if !ok {
				return nil, fmt.Errorf("rule refers to unknown set %s", r.SrcSet)
			}
			off, l := uint32(12), uint32(4) // ip saddr
			if r.NFProto == 6 {
				off, l = 8, 16 // ip6 saddr
			}
			ex = append(ex,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: l},
				&expr.Dynset{SrcRegKey: 1, SetName: src.Name, SetID: src.ID, Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: []expr.Any{lim}})
		} else {
			ex = append(ex, lim)
		}
	}
	ex = append(ex, &expr.Counter{})
	switch r.Verdict {
	case "drop":
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictDrop})
	case "notrack":
		ex = append(ex, &expr.Notrack{})
	default:
		return nil, fmt.Errorf("unknown verdict %q", r.Verdict)
	}
	return ex, nil
}

func limitExpr(l nftLimit) (*expr.Limit, error) {
	units := map[string]expr.LimitTime{"second": expr.LimitTimeSecond, "minute": expr.LimitTimeMinute, "hour": expr.LimitTimeHour, "day": expr.LimitTimeDay}
	u, ok := units[l.Rate.Unit]
	if !ok {
		return nil, fmt.Errorf("unknown rate unit %q", l.Rate.Unit)
	}
	return &expr.Limit{Type: expr.LimitTypePkts, Rate: l.Rate.N, Over: true, Unit: u, Burst: l.Burst}, nil
}

// install sends spec as one transaction.
func (n *nftClient) install(spec nftSpec) error {
	if err := n.queue(spec); err != nil {
		return err
	}
	if err := n.c.Flush(); err != nil {
		return fmt.Errorf("install nftables rules in table inet %s: %w", TableName, err)
	}
	return nil
}

// state reads our table. A missing table is an empty state.
func (n *nftClient) state() (kernelState, error) {
	ks := newKernelState()
	t := table()
	sets, err := n.c.GetSets(t)
	if err != nil {
		if isNotExist(err) {
			return ks, nil
		}
		return ks, fmt.Errorf("list sets of table inet %s: %w", TableName, err)
	}
	for _, s := range sets {
		id := idFromSetName(s.Name)
		if id == "" {
			continue
		}
		ks.Present[id] = true
		if !strings.HasPrefix(s.Name, "arm-") {
			continue
		}
		els, err := n.c.GetSetElements(s)
		if err != nil {
			return ks, fmt.Errorf("list elements of set %s: %w", s.Name, err)
		}
		for _, e := range els {
			// An element with no time left is expired even if the
			// kernel's garbage collector has not removed it yet.
			if e.Timeout == 0 || e.Expires > 0 {
				ks.Armed[id] = e.Expires
			}
		}
	}
	rules, err := n.rules()
	if err != nil {
		return ks, err
	}
	for _, r := range rules {
		c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		if id := idFromComment(c); id != "" {
			ks.Present[id] = true
			ks.Actions[id] = actionFromComment(c)
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					ks.Packets[id] += ctr.Packets
				}
			}
		}
	}
	return ks, nil
}

func idFromSetName(name string) string {
	for _, p := range []string{"arm-", "src4-", "src6-"} {
		if id, ok := strings.CutPrefix(name, p); ok {
			return id
		}
	}
	return ""
}

func ruleID(r *nftables.Rule) string {
	c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return idFromComment(c)
}

// rules lists the rules of our table's chains.
func (n *nftClient) rules() ([]*nftables.Rule, error) {
	chains, err := n.c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var out []*nftables.Rule
	for _, c := range chains {
		if c.Table.Name != TableName {
			continue
		}
		rs, err := n.c.GetRules(c.Table, c)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", c.Name, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// remove deletes every rule and set of the given ids, then the table if
// nothing else is left in it.
func (n *nftClient) remove(ids map[string]bool) error {
	if len(ids) == 0 {
		return nil
	}
	rules, err := n.rules()
	if err != nil {
		return err
	}
	left := 0
	for _, r := range rules {
		if ids[ruleID(r)] {
			if err := n.c.DelRule(r); err != nil {
				return fmt.Errorf("queue rule deletion: %w", err)
			}
			continue
		}
		left++
	}
	sets, err := n.c.GetSets(table())
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("list sets of table inet %s: %w", TableName, err)
	}
	for _, s := range sets {
		if ids[idFromSetName(s.Name)] {
			n.c.DelSet(s)
			continue
		}
		left++
	}
	if left == 0 && len(rules)+len(sets) > 0 {
		n.c.DelTable(table())
	}
	if err := n.c.Flush(); err != nil {
		return fmt.Errorf("delete nftables objects of %s: %w", strings.Join(keys(ids), ","), err)
	}
	return nil
}

func ctKeyName(k expr.CtKey) string {
	switch k {
	case expr.CtKeySTATE:
		return "state"
	case expr.CtKeyMARK:
		return "mark"
	case expr.CtKeySTATUS:
		return "status"
	}
	return fmt.Sprintf("key %d", k)
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family%d", f)
}

func isNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "no such file or directory")
}
