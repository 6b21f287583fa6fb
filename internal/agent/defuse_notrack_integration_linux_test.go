//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/defuse"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
)

// TestIntegrationAutoDefuseNotrackChecked: auto mode goes through the same
// firewall check as `defuse apply`. The storm decision is made by hand
// (the same call a storm sample makes), so no storm and no timing is
// involved: in a namespace without a stateful filter notrack is armed; once
// an nftables `ct state established,related accept` + policy drop filter is
// there, the arming fails, the event quotes the rule, and nothing is
// installed.
func TestIntegrationAutoDefuseNotrackChecked(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	a0, err := addr.Parse(sb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	target := source.Target{Addr: a0, NetNS: sb.NetNS}
	state := filepath.Join(t.TempDir(), "defuse.json")
	hub := serve.NewHub(nil, 100, 100)
	ag, err := New(Options{
		Targets: []source.Target{target}, Interval: time.Second, Hub: hub,
		Logger:     slog.New(slog.NewTextHandler(&sandboxtest.Buffer{}, nil)),
		AutoDefuse: &AutoDefuse{Actions: []defuse.Action{defuse.Notrack}, TTL: time.Minute, StatePath: state},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := &defuse.Manager{StatePath: state, NetNS: sb.NetNS, Valkey: a0}
	arm := func() (action, reason string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		n := len(hub.Events())
		ag.autoDefuse(ctx, target, &autoState{}, nil, detect.Storm, time.Now())
		ag.defuseWork.Wait()
		for _, raw := range hub.Events()[n:] {
			var e struct{ Type, Action, Reason string }
			if json.Unmarshal(raw, &e) == nil && e.Type == "defuse" {
				return e.Action, e.Reason
			}
		}
		t.Fatal("no defuse event")
		return "", ""
	}

	// No filter: armed.
	if act, why := arm(); act != "applied" {
		t.Fatalf("without a stateful filter: %s (%s), want applied", act, why)
	}
	if _, err := m.Revert(context.Background(), mustOne(t, m).ID); err != nil {
		t.Fatal(err)
	}

	cmd := sb.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    tcp dport ` + strconv.Itoa(sb.Port) + ` ct state new accept
  }
}
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
	act, why := arm()
	if act != "failed" || !strings.Contains(why, `"ct state established,related accept" uses ct state`) {
		t.Fatalf("under a stateful filter: %s (%s), want failed quoting the rule", act, why)
	}
	if out, err := sb.Command(context.Background(), "nft", "list", "table", "inet", defuse.TableName).CombinedOutput(); err == nil {
		t.Errorf("refused notrack left table inet %s:\n%s", defuse.TableName, out)
	}
	if left, err := m.List(context.Background()); err != nil || len(left) != 0 {
		t.Errorf("after the refusal: %+v %v, want nothing listed", left, err)
	}
}

func mustOne(t *testing.T, m *defuse.Manager) defuse.Mitigation {
	t.Helper()
	l, err := m.List(context.Background())
	if err != nil || len(l) != 1 {
		t.Fatalf("list: %+v %v, want one mitigation", l, err)
	}
	return l[0]
}
