//go:build linux

package defuse

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// trackingDependents explains which nftables rules in the namespace depend
// on conntrack for the port's packets (NAT chains, ct matches, NAT
// statements, iptables-nft conntrack/state matches), quoting each rule.
// Empty means notrack is safe as far as nftables is concerned.
func (n *nftClient) trackingDependents(port int) ([]string, error) {
	chains, err := n.c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var why []string
	for _, c := range chains {
		if c.Table.Name == TableName && c.Table.Family == nftables.TableFamilyINet {
			continue
		}
		if !chainSeesLocal(c) {
			continue
		}
		where := fmt.Sprintf("table %s %s chain %s", familyName(c.Table.Family), c.Table.Name, c.Name)
		if c.Type == nftables.ChainTypeNAT {
			why = append(why, where+" is a NAT chain (NAT needs conntrack)")
			continue
		}
		rules, err := n.c.GetRules(c.Table, c)
		if err != nil {
			return nil, fmt.Errorf("list rules of %s: %w", where, err)
		}
		for _, r := range rules {
			if !nftSeesPort(r.Exprs, port) {
				continue
			}
			if reason := needsTracking(r.Exprs); reason != "" {
				why = append(why, fmt.Sprintf("%s rule handle %d %q uses %s", where, r.Handle, describeRule(r), reason))
			}
		}
	}
	return why, nil
}

// chainSeesLocal: base chains on hooks a local server's packets traverse
// (not forward, not bridge/arp/netdev families), and regular chains, which
// may be jumped to from them.
func chainSeesLocal(c *nftables.Chain) bool {
	switch c.Table.Family {
	case nftables.TableFamilyINet, nftables.TableFamilyIPv4, nftables.TableFamilyIPv6:
	default:
		return false
	}
	if c.Hooknum == nil {
		return true
	}
	return *c.Hooknum != *nftables.ChainHookForward
}

// nftSeesPort is false when a rule is limited to another layer-4 protocol
// or to another destination port.
func nftSeesPort(ex []expr.Any, port int) bool {
	for i := 0; i+1 < len(ex); i++ {
		cmp, ok := ex[i+1].(*expr.Cmp)
		if !ok || cmp.Op != expr.CmpOpEq {
			continue
		}
		switch v := ex[i].(type) {
		case *expr.Meta:
			if v.Key == expr.MetaKeyL4PROTO && len(cmp.Data) == 1 && cmp.Data[0] != unix.IPPROTO_TCP {
				return false
			}
		case *expr.Payload:
			if v.Base == expr.PayloadBaseTransportHeader && v.Offset == 2 && v.Len == 2 && len(cmp.Data) == 2 &&
				int(binary.BigEndian.Uint16(cmp.Data)) != port {
				return false
			}
		}
	}
	return true
}

// needsTracking reports what in a rule's expressions reads conntrack.
func needsTracking(ex []expr.Any) string {
	for _, e := range ex {
		switch v := e.(type) {
		case *expr.Ct:
			if !v.SourceRegister {
				return "ct " + ctKeyName(v.Key)
			}
		case *expr.NAT, *expr.Masq, *expr.Redir:
			return "NAT"
		case *expr.Match:
			switch v.Name {
			case "conntrack", "state", "connmark", "connlimit", "connbytes", "helper":
				return "iptables -m " + v.Name
			}
		case *expr.Target:
			switch v.Name {
			case "MASQUERADE", "DNAT", "SNAT", "REDIRECT", "NETMAP", "CONNMARK":
				return "iptables -j " + v.Name
			}
		}
	}
	return ""
}

// describeRule renders the parts of a rule that matter here in nft syntax
// ("tcp dport 6379 ct state established,related accept"); parts it does
// not render show as "…". The rule's handle finds it exactly:
// nft -a list ruleset.
func describeRule(r *nftables.Rule) string {
	var b []string
	ex := r.Exprs
	for i := 0; i < len(ex); i++ {
		var next *expr.Cmp
		if i+1 < len(ex) {
			next, _ = ex[i+1].(*expr.Cmp)
		}
		switch v := ex[i].(type) {
		case *expr.Meta:
			if v.Key == expr.MetaKeyL4PROTO && next != nil && len(next.Data) == 1 {
				b = append(b, "meta l4proto "+protoName(next.Data[0]))
				i++
				continue
			}
		case *expr.Payload:
			if v.Base == expr.PayloadBaseTransportHeader && v.Len == 2 && (v.Offset == 0 || v.Offset == 2) && next != nil && len(next.Data) == 2 {
				dir := "dport"
				if v.Offset == 0 {
					dir = "sport"
				}
				b = append(b, fmt.Sprintf("th %s %s%d", dir, cmpOp(next.Op), binary.BigEndian.Uint16(next.Data)))
				i++
				continue
			}
		case *expr.Ct:
			if v.Key == expr.CtKeySTATE && !v.SourceRegister && i+2 < len(ex) {
				if bw, ok := ex[i+1].(*expr.Bitwise); ok && len(bw.Mask) == 4 {
					b = append(b, "ct state "+ctStateNames(binary.NativeEndian.Uint32(bw.Mask)))
					i += 2
					continue
				}
			}
			if !v.SourceRegister {
				b = append(b, "ct "+ctKeyName(v.Key))
				continue
			}
		case *expr.Counter:
			b = append(b, "counter")
			continue
		case *expr.Verdict:
			b = append(b, verdictName(v))
			continue
		case *expr.NAT:
			b = append(b, "nat")
			continue
		case *expr.Masq:
			b = append(b, "masquerade")
			continue
		case *expr.Redir:
			b = append(b, "redirect")
			continue
		case *expr.Match:
			b = append(b, "xt match "+v.Name)
			continue
		case *expr.Target:
			b = append(b, "xt target "+v.Name)
			continue
		}
		if len(b) == 0 || b[len(b)-1] != "…" {
			b = append(b, "…")
		}
	}
	if c, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && c != "" {
		b = append(b, fmt.Sprintf("comment %q", c))
	}
	return strings.Join(b, " ")
}

func cmpOp(op expr.CmpOp) string {
	if op == expr.CmpOpNeq {
		return "!= "
	}
	return ""
}

func protoName(p byte) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	}
	return fmt.Sprint(p)
}

func ctStateNames(mask uint32) string {
	names := []struct {
		bit  uint32
		name string
	}{{1, "invalid"}, {2, "established"}, {4, "related"}, {8, "new"}, {64, "untracked"}}
	var out []string
	for _, n := range names {
		if mask&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	if len(out) == 0 {
		return fmt.Sprintf("0x%x", mask)
	}
	return strings.Join(out, ",")
}

func verdictName(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	}
	return "verdict"
}
