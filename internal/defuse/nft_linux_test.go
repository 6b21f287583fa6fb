//go:build linux

package defuse

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// recorder answers every request with an ack and keeps the requests.
type recorder struct{ msgs []netlink.Message }

func (r *recorder) dial(req []netlink.Message) ([]netlink.Message, error) {
	r.msgs = append(r.msgs, req...)
	var acks []netlink.Message
	for _, m := range req {
		if m.Header.Flags&netlink.Acknowledge != 0 {
			acks = append(acks, netlink.Message{
				Header: netlink.Header{Length: 4, Type: netlink.Error, Sequence: m.Header.Sequence, PID: m.Header.PID},
				Data:   []byte{0, 0, 0, 0},
			})
		}
	}
	return acks, nil
}

var msgNames = map[int]string{
	unix.NFT_MSG_NEWTABLE: "NEWTABLE", unix.NFT_MSG_NEWCHAIN: "NEWCHAIN", unix.NFT_MSG_NEWSET: "NEWSET",
	unix.NFT_MSG_NEWSETELEM: "NEWSETELEM", unix.NFT_MSG_NEWRULE: "NEWRULE",
}

// dump renders recorded messages as "TYPE hex" lines, without the batch
// begin/end framing (which carries the generation id).
func dump(msgs []netlink.Message) (types []string, text string) {
	var b strings.Builder
	for _, m := range msgs {
		t := int(m.Header.Type) & 0xff
		name, ok := msgNames[t]
		if !ok || int(m.Header.Type)>>8 != unix.NFNL_SUBSYS_NFTABLES {
			continue
		}
		types = append(types, name)
		fmt.Fprintf(&b, "%s %s\n", name, hex.EncodeToString(m.Data))
	}
	return types, b.String()
}

// TestInstallMessages records the netlink batch each action sends and
// compares it with testdata/<action>.netlink (go test -update rewrites).
// The golden files were checked against the kernel by the integration tests
// (the rules install and `nft list ruleset` shows them).
func TestInstallMessages(t *testing.T) {
	tests := []struct {
		a         Action
		p         Params
		wantTypes string
	}{
		{RatelimitSYN, Params{Port: 6379, TTL: 60 * time.Second, Rate: Rate{20, "second"}, Burst: 40},
			"NEWTABLE NEWCHAIN NEWSET NEWSETELEM NEWSET NEWSET NEWRULE NEWRULE"},
		{RatelimitGlobal, Params{Port: 6379, TTL: 60 * time.Second, Rate: Rate{500, "second"}, Burst: 500},
			"NEWTABLE NEWCHAIN NEWSET NEWSETELEM NEWRULE"},
		{Notrack, Params{Port: 6379, TTL: 60 * time.Second},
			"NEWTABLE NEWCHAIN NEWCHAIN NEWSET NEWSETELEM NEWRULE NEWRULE"},
	}
	for _, tt := range tests {
		t.Run(string(tt.a), func(t *testing.T) {
			spec, err := buildNFT("0a1b2c3d", tt.a, tt.p)
			if err != nil {
				t.Fatal(err)
			}
			var rec recorder
			n, err := openNFT("", rec.dial)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if err := n.install(spec); err != nil {
				t.Fatal(err)
			}
			types, got := dump(rec.msgs)
			if strings.Join(types, " ") != tt.wantTypes {
				t.Errorf("message types %v, want %s", types, tt.wantTypes)
			}
			path := filepath.Join("testdata", string(tt.a)+".netlink")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create)", err)
			}
			if got != string(want) {
				t.Errorf("netlink batch differs from %s:\n got: %s\nwant: %s", path, got, want)
			}
		})
	}
}

// TestRuleExprs checks the expressions that carry the safety properties:
// SYN-only match, per-source dynset update with an "over" limit, the arm
// set lookup, and the verdict.
func TestRuleExprs(t *testing.T) {
	sets := map[string]*nftables.Set{
		"arm-x":  {Name: "arm-x", ID: 1},
		"src4-x": {Name: "src4-x", ID: 2},
		"src6-x": {Name: "src6-x", ID: 3},
	}
	spec, _ := buildNFT("x", RatelimitSYN, Params{Port: 6379, TTL: time.Minute, Rate: Rate{20, "second"}, Burst: 40})
	for i, r := range spec.Rules {
		ex, err := ruleExprs(r, sets)
		if err != nil {
			t.Fatal(err)
		}
		var (
			sawLookup, sawSyn, sawDynset bool
			lastPayload                  *expr.Payload
		)
		for j, e := range ex {
			switch v := e.(type) {
			case *expr.Payload:
				lastPayload = v
			case *expr.Lookup:
				sawLookup = v.SetName == "arm-x" && v.SetID == 1 && !v.Invert && lastPayload.Offset == 2
			case *expr.Bitwise:
				next := ex[j+1].(*expr.Cmp)
				sawSyn = bytes.Equal(v.Mask, []byte{0x12}) && bytes.Equal(next.Data, []byte{0x02}) && lastPayload.Offset == 13
			case *expr.Dynset:
				lim := v.Exprs[0].(*expr.Limit)
				wantSet, wantOff, wantLen := "src4-x", uint32(12), uint32(4)
				if i == 1 {
					wantSet, wantOff, wantLen = "src6-x", 8, 16
				}
				sawDynset = v.SetName == wantSet && v.Operation == unix.NFT_DYNSET_OP_UPDATE &&
					lim.Over && lim.Rate == 20 && lim.Burst == 40 && lim.Unit == expr.LimitTimeSecond &&
					lastPayload.Base == expr.PayloadBaseNetworkHeader && lastPayload.Offset == wantOff && lastPayload.Len == wantLen
			}
		}
		if v, ok := ex[len(ex)-1].(*expr.Verdict); !ok || v.Kind != expr.VerdictDrop {
			t.Errorf("rule %d: last expression %#v, want drop", i, ex[len(ex)-1])
		}
		if !sawLookup || !sawSyn || !sawDynset {
			t.Errorf("rule %d: lookup %v syn %v dynset %v", i, sawLookup, sawSyn, sawDynset)
		}
	}
	if _, err := ruleExprs(nftRule{ArmSet: "missing"}, sets); err == nil {
		t.Error("unknown set accepted")
	}
}

func TestNeedsTracking(t *testing.T) {
	tests := []struct {
		ex   []expr.Any
		want string
	}{
		{[]expr.Any{&expr.Ct{Key: expr.CtKeySTATE, Register: 1}}, "ct state"},
		{[]expr.Any{&expr.Masq{}}, "NAT"},
		{[]expr.Any{&expr.Match{Name: "conntrack"}}, "iptables -m conntrack"},
		{[]expr.Any{&expr.Target{Name: "DNAT"}}, "iptables -j DNAT"},
		{[]expr.Any{&expr.Ct{Key: expr.CtKeyMARK, SourceRegister: true}}, ""},
		{[]expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}}, ""},
	}
	for _, tt := range tests {
		if got := needsTracking(tt.ex); got != tt.want {
			t.Errorf("needsTracking(%#v) = %q, want %q", tt.ex, got, tt.want)
		}
	}
}
