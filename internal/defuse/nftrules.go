package defuse

import (
	"fmt"
	"strings"
	"time"
)

// Names of the nftables objects stormguard owns. Everything lives in one
// table so `nft delete table inet stormguard` removes all of it.
const (
	TableName       = "stormguard"
	chainPrerouting = "prerouting"
	chainOutput     = "output"
	// rawPriority runs before conntrack (-200), so the limits spare the
	// conntrack table and notrack can take effect.
	rawPriority = -300
	// srcSetSize bounds the per-source sets; when full, new sources are not
	// added and their SYNs pass unlimited (the rule's dynset fails open).
	srcSetSize = 65536
	// maxSrcTimeout bounds how long an idle source keeps its bucket.
	maxSrcTimeout = 60 * time.Second
	commentPrefix = "stormguard:"
)

// nftSet is a set stormguard creates for one mitigation.
type nftSet struct {
	Name    string
	Type    string // ipv4_addr, ipv6_addr, inet_service
	Dynamic bool
	Timeout time.Duration // default element timeout (dynamic sets)
	Size    uint32
	// Port, with ElemTimeout, is the "armed" element of an arm set: the
	// mitigation's rules match only while it exists.
	Port        uint16
	ElemTimeout time.Duration
}

// nftLimit is a limit expression that matches packets over the rate.
type nftLimit struct {
	Rate  Rate
	Burst uint32
}

// nftRule is one rule, in the small vocabulary the actions need.
type nftRule struct {
	Chain   string // chainPrerouting or chainOutput
	NFProto int    // 0 any, 4 or 6
	PortDir string // "dport" or "sport"
	ArmSet  string // tcp PORTDIR @ArmSet
	SynOnly bool   // tcp flags & (syn|ack) == syn
	// NotLoopback: iifname != "lo" (only packets from other hosts).
	NotLoopback bool
	// SrcSet, when set, is a dynamic set keyed on the source address with
	// Limit as its per-element statement.
	SrcSet  string
	Limit   *nftLimit
	Verdict string // "drop" or "notrack"
	Comment string
}

// nftSpec is everything one mitigation installs.
type nftSpec struct {
	Sets   []nftSet
	Rules  []nftRule
	Output bool // needs the output chain
}

func armSetName(id string) string  { return "arm-" + id }
func src4SetName(id string) string { return "src4-" + id }
func src6SetName(id string) string { return "src6-" + id }

// ruleComment tags a rule with its mitigation id.
func ruleComment(id string, a Action) string { return commentPrefix + id + " " + string(a) }

// idFromComment returns the mitigation id in a rule comment, or "".
func idFromComment(c string) string {
	rest, ok := strings.CutPrefix(c, commentPrefix)
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, " ")
	return id
}

// buildNFT returns the nftables objects for an nftables action.
func buildNFT(id string, a Action, p Params) (nftSpec, error) {
	if !a.nft() {
		return nftSpec{}, fmt.Errorf("%s installs no nftables rules", a)
	}
	arm := nftSet{Name: armSetName(id), Type: "inet_service", Port: uint16(p.Port), ElemTimeout: p.TTL}
	spec := nftSpec{Sets: []nftSet{arm}}
	c := ruleComment(id, a)
	switch a {
	case RatelimitSYN:
		srcTimeout := min(p.TTL, maxSrcTimeout)
		if srcTimeout < time.Second {
			srcTimeout = time.Second
		}
		lim := &nftLimit{Rate: p.Rate, Burst: p.Burst}
		spec.Sets = append(spec.Sets,
			nftSet{Name: src4SetName(id), Type: "ipv4_addr", Dynamic: true, Timeout: srcTimeout, Size: srcSetSize},
			nftSet{Name: src6SetName(id), Type: "ipv6_addr", Dynamic: true, Timeout: srcTimeout, Size: srcSetSize})
		spec.Rules = []nftRule{
			{Chain: chainPrerouting, NFProto: 4, PortDir: "dport", ArmSet: arm.Name, SynOnly: true, SrcSet: src4SetName(id), Limit: lim, Verdict: "drop", Comment: c},
			{Chain: chainPrerouting, NFProto: 6, PortDir: "dport", ArmSet: arm.Name, SynOnly: true, SrcSet: src6SetName(id), Limit: lim, Verdict: "drop", Comment: c},
		}
	case RatelimitGlobal:
		spec.Rules = []nftRule{
			{Chain: chainPrerouting, PortDir: "dport", ArmSet: arm.Name, SynOnly: true, NotLoopback: p.RemoteOnly, Limit: &nftLimit{Rate: p.Rate, Burst: p.Burst}, Verdict: "drop", Comment: c},
		}
	case Notrack:
		spec.Output = true
		spec.Rules = []nftRule{
			{Chain: chainPrerouting, PortDir: "dport", ArmSet: arm.Name, Verdict: "notrack", Comment: c},
			{Chain: chainOutput, PortDir: "sport", ArmSet: arm.Name, Verdict: "notrack", Comment: c},
		}
	}
	return spec, nil
}

// nftDuration renders d as nft's time syntax ("60s", "1500ms").
func nftDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// render returns the change as nft commands (valid `nft -f` input), so a
// dry run shows exactly what apply sends over netlink.
func (s nftSpec) render() []string {
	t := "inet " + TableName
	out := []string{
		"add table " + t,
		fmt.Sprintf("add chain %s %s { type filter hook prerouting priority %d; policy accept; }", t, chainPrerouting, rawPriority),
	}
	if s.Output {
		out = append(out, fmt.Sprintf("add chain %s %s { type filter hook output priority %d; policy accept; }", t, chainOutput, rawPriority))
	}
	for _, set := range s.Sets {
		if set.Dynamic {
			out = append(out, fmt.Sprintf("add set %s %s { type %s; size %d; flags dynamic,timeout; timeout %s; }",
				t, set.Name, set.Type, set.Size, nftDuration(set.Timeout)))
			continue
		}
		out = append(out,
			fmt.Sprintf("add set %s %s { type %s; flags timeout; }", t, set.Name, set.Type),
			fmt.Sprintf("add element %s %s { %d timeout %s }", t, set.Name, set.Port, nftDuration(set.ElemTimeout)))
	}
	for _, r := range s.Rules {
		out = append(out, "add rule "+t+" "+r.Chain+" "+r.render())
	}
	return out
}

func (r nftRule) render() string {
	var b []string
	switch r.NFProto {
	case 4:
		b = append(b, "meta nfproto ipv4")
	case 6:
		b = append(b, "meta nfproto ipv6")
	}
	b = append(b, fmt.Sprintf("tcp %s @%s", r.PortDir, r.ArmSet))
	if r.SynOnly {
		b = append(b, "tcp flags & (syn | ack) == syn")
	}
	if r.NotLoopback {
		b = append(b, `iifname != "lo"`)
	}
	if r.Limit != nil {
		lim := fmt.Sprintf("limit rate over %s burst %d packets", r.Limit.Rate, r.Limit.Burst)
		if r.SrcSet != "" {
			key := "ip saddr"
			if r.NFProto == 6 {
				key = "ip6 saddr"
			}
			b = append(b, fmt.Sprintf("update @%s { %s %s }", r.SrcSet, key, lim))
		} else {
			b = append(b, lim)
		}
	}
	b = append(b, "counter", r.Verdict, fmt.Sprintf("comment %q", r.Comment))
	return strings.Join(b, " ")
}
