package defuse

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/netns"
)

// legacyIptables inspects legacy (x_tables) iptables in the namespace,
// which nftables cannot see. /proc/net/ip_tables_names lists the tables
// that exist; their rules are only readable through iptables-legacy-save,
// run inside the namespace. When tables exist but cannot be read, that is
// itself a reason to refuse.
func legacyIptables(ctx context.Context, ns string, port int) []string {
	var why []string
	for _, fam := range []struct{ names, save, fallback string }{
		{"ip_tables_names", "iptables-legacy-save", "iptables-save"},
		{"ip6_tables_names", "ip6tables-legacy-save", "ip6tables-save"},
	} {
		b, err := readNetFile(ns, fam.names)
		if err != nil || len(strings.Fields(string(b))) == 0 {
			continue // no legacy tables of this family
		}
		out, cmd, err := runLegacySave(ctx, ns, fam.save, fam.fallback)
		if err != nil {
			why = append(why, fmt.Sprintf("legacy iptables tables exist (%s: %s) but cannot be inspected: %v",
				fam.names, strings.Join(strings.Fields(string(b)), ","), err))
			continue
		}
		save, err := parseIptablesSave(out)
		if err != nil {
			why = append(why, fmt.Sprintf("cannot parse %s output: %v", cmd, err))
			continue
		}
		why = append(why, legacyBlockers(save, port, cmd)...)
	}
	return why
}

// runLegacySave runs iptables-legacy-save (or an iptables-save that says
// it is the legacy variant) inside the namespace.
func runLegacySave(ctx context.Context, ns, bin, fallback string) (string, string, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		p, ferr := exec.LookPath(fallback)
		if ferr != nil {
			return "", "", fmt.Errorf("neither %s nor %s is installed", bin, fallback)
		}
		v, _ := exec.CommandContext(ctx, p, "--version").Output()
		if !strings.Contains(string(v), "legacy") {
			return "", "", fmt.Errorf("%s is installed, and %s is not the legacy variant (%s)", bin, fallback, strings.TrimSpace(string(v)))
		}
		path, bin = p, fallback
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	// exec from the thread netns.Do moved into the namespace: the child
	// starts there.
	err = netns.Do(ns, func() error {
		c := exec.CommandContext(ctx, path)
		c.Stdout, c.Stderr = &stdout, &stderr
		return c.Run()
	})
	if err != nil {
		return "", bin, fmt.Errorf("%s: %v: %s", bin, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), bin, nil
}
