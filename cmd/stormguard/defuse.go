package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/defuse"
	"github.com/stormguard/stormguard/internal/netns"
)

// defuseOpts are the flags shared by the defuse subcommands.
type defuseOpts struct {
	state  string
	netns  string
	valkey string
	conn   valkeyConnFlags
	json   bool
}

func (o *defuseOpts) flags(c *cobra.Command, withValkey bool) {
	f := c.Flags()
	f.StringVar(&o.state, "state", defuse.DefaultStatePath, "state file recording applied mitigations")
	f.StringVar(&o.netns, "netns", "", "network namespace of the target, e.g. /var/run/netns/NAME or /proc/PID/ns/net")
	f.BoolVar(&o.json, "json", false, "print JSON")
	if withValkey {
		f.StringVar(&o.valkey, "valkey", "", "Valkey address (default 127.0.0.1:PORT): HOST:PORT or valkey://[user:pass@]host:port")
		o.conn.register(f)
	}
}

// manager builds the defuse.Manager; port fills a missing --valkey.
func (o *defuseOpts) manager(cmd *cobra.Command, port int) (*defuse.Manager, error) {
	if o.netns != "" {
		if err := netns.Check(o.netns); err != nil {
			return nil, err
		}
	}
	v := o.valkey
	if v == "" {
		if port == 0 {
			port = addr.DefaultPort
		}
		v = "127.0.0.1:" + strconv.Itoa(port)
	}
	a, err := o.conn.address(v)
	if err != nil {
		return nil, err
	}
	return &defuse.Manager{
		StatePath: o.state, NetNS: o.netns, Valkey: a,
		Logger: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, nil
}

// defuseErr maps defuse errors to the exit codes: bad input 2, a refused
// mitigation 1 (a documented condition), anything else 2.
func defuseErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, defuse.ErrRefused):
		return &exitError{code: exitFindings, err: err}
	default:
		return usageErr(err)
	}
}

func newDefuseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "defuse plan|apply|list|revert",
		Short: "Plan, apply, list and revert reversible, time-limited mitigations",
		Long: `Mitigations against a connection storm on one Valkey listener. Each one is
tagged, time-limited (--ttl is mandatory), listed, and removed on revert or
expiry. nftables rules (table inet stormguard) stop matching at their TTL by
themselves; Valkey config and sysctls are restored at the TTL by a transient
systemd timer (where systemd runs) or a detached restore process, so every
mitigation ends even if stormguard is killed (restore_by in list --json).

Actions: ratelimit-syn, ratelimit-global, notrack, accept-cap, backlog,
kill-idle (see docs/defuse.md).

Exit codes: 0 success, 1 the mitigation was refused as unsafe or useless here
(the message says why), 2 usage or connection error.`,
		Example: `  stormguard defuse plan --valkey 127.0.0.1:6379
  stormguard defuse apply --action ratelimit-syn --port 6379 --rate 20/s --ttl 60s
  stormguard defuse list --json
  stormguard defuse revert --all`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageErr(errors.New("defuse needs a subcommand: plan, apply, list or revert"))
		},
	}
	cmd.AddCommand(newDefusePlanCmd(), newDefuseApplyCmd(), newDefuseListCmd(), newDefuseRevertCmd(), newDefuseRestoreDueCmd())
	return cmd
}

// newDefuseRestoreDueCmd is the hidden restorer that a systemd timer or a
// detached restore process runs at a mitigation's TTL.
func newDefuseRestoreDueCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restore-due --state FILE --id ID [--at TIME] [--password-file F]",
		Short: "Restore one mitigation at its TTL (run by the scheduled restorer)",
		Long: `Wait until the mitigation's TTL (--at, the expiry recorded at apply in RFC 3339,
as a wall-clock instant; without it, read from the state file), then put back
the recorded previous values (only where the current value is still the one
stormguard set) and remove its state entry. 'defuse apply' starts this by itself, as a transient systemd
timer or a detached process; the Valkey password comes from --password-file
(a 0600 file, removed once read) or an inherited descriptor, never argv.`,
		Example:            `  stormguard defuse restore-due --state /var/lib/stormguard/defuse.json --id 3f2a9c1d`,
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch code := defuse.RestoreMain(args); code {
			case 0:
				return nil
			case 2:
				return usageErr(errors.New("restore-due failed (see above)"))
			default:
				return &exitError{code: code, err: errors.New("restore-due failed (see above)")}
			}
		},
	}
}

func newDefuseApplyCmd() *cobra.Command {
	var o defuseOpts
	var p defuse.Params
	var action, rate string
	var burst uint32
	cmd := &cobra.Command{
		Use:   "apply --action A --ttl D [action flags]",
		Short: "Apply one mitigation for a limited time (--dry-run shows the exact changes)",
		Long: `Apply one mitigation for --ttl (required) and record it in the state file.

nftables actions (ratelimit-syn, ratelimit-global, notrack) need --port and
live in the table inet stormguard; their rules stop matching at the TTL even
if stormguard is not running. accept-cap changes Valkey's
max-new-connections-per-cycle and backlog raises somaxconn and
tcp_max_syn_backlog; both are restored by revert or at the TTL by a systemd
timer or a detached restore process (only values still as stormguard set
them are put back). kill-idle disconnects idle clients once and
needs --yes-kill (it cannot be undone). Established connections are never
cut by the other actions.

--dry-run prints exactly what would change and changes nothing.`,
		Example: `  stormguard defuse apply --action ratelimit-syn --port 6379 --rate 20/s --ttl 60s
  stormguard defuse apply --action ratelimit-global --port 6379 --rate 500/s --ttl 2m --dry-run
  stormguard defuse apply --action notrack --port 6379 --ttl 10m
  stormguard defuse apply --action accept-cap --valkey 127.0.0.1:6379 --value 100 --ttl 5m
  stormguard defuse apply --action backlog --somaxconn 8192 --syn-backlog 8192 --ttl 1h
  stormguard defuse apply --action kill-idle --valkey 127.0.0.1:6379 --min-idle 300s --yes-kill --ttl 1s`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if action == "" {
				return usageErr(errors.New("--action is required (ratelimit-syn, ratelimit-global, notrack, accept-cap, backlog, kill-idle)"))
			}
			a, err := defuse.ParseAction(action)
			if err != nil {
				return usageErr(err)
			}
			if p.TTL <= 0 {
				return usageErr(errors.New("--ttl is required (e.g. --ttl 60s): every mitigation must expire"))
			}
			if rate != "" {
				if p.Rate, err = defuse.ParseRate(rate); err != nil {
					return usageErr(err)
				}
			}
			p.Burst = burst
			if err := p.Validate(a); err != nil {
				return usageErr(err)
			}
			m, err := o.manager(cmd, p.Port)
			if err != nil {
				return usageErr(err)
			}
			mt, err := m.Apply(cmd.Context(), a, p)
			if err != nil {
				return defuseErr(fmt.Errorf("%s: %w", a, err))
			}
			return printMitigation(cmd.OutOrStdout(), mt, o.json)
		},
	}
	o.flags(cmd, true)
	f := cmd.Flags()
	f.StringVar(&action, "action", "", "ratelimit-syn, ratelimit-global, notrack, accept-cap, backlog or kill-idle")
	f.DurationVar(&p.TTL, "ttl", 0, "how long the mitigation lasts (required)")
	f.IntVar(&p.Port, "port", 0, "Valkey's TCP port (required for the nftables actions)")
	f.StringVar(&rate, "rate", "", "SYN rate for ratelimit-*: N/s, N/m (e.g. 20/s)")
	f.Uint32Var(&burst, "burst", 0, "limit burst in packets (default: the rate, at least 5)")
	f.IntVar(&p.Value, "value", 0, "accept-cap: new max-new-connections-per-cycle (1-1000)")
	f.IntVar(&p.Somaxconn, "somaxconn", 0, "backlog: new net.core.somaxconn (default 4096)")
	f.IntVar(&p.SynBacklog, "syn-backlog", 0, "backlog: new net.ipv4.tcp_max_syn_backlog (default 4096)")
	f.DurationVar(&p.MinIdle, "min-idle", 0, "kill-idle: only clients idle at least this long (default 60s)")
	f.Float64Var(&p.NearFraction, "near", 0, "kill-idle: act only when connected_clients >= this fraction of maxclients (default 0.9)")
	f.BoolVar(&p.ConfirmKill, "yes-kill", false, "kill-idle: confirm disconnecting idle clients (irreversible)")
	f.BoolVar(&p.DryRun, "dry-run", false, "show exactly what would change, change nothing")
	return cmd
}

func printMitigation(w io.Writer, mt defuse.Mitigation, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(mt)
	}
	verb := "applied"
	if mt.DryRun {
		verb = "would apply (dry run)"
	}
	fmt.Fprintf(w, "%s %s id %s", verb, mt.Action, mt.ID)
	if mt.Port != 0 {
		fmt.Fprintf(w, " on port %d", mt.Port)
	}
	switch {
	case !mt.Reversible:
		fmt.Fprintln(w, " (irreversible; not listed)")
	default:
		fmt.Fprintf(w, " until %s (%s)\n", mt.Expires.Format(time.RFC3339), restoreByText(mt))
	}
	fmt.Fprintln(w, "changes:")
	for _, c := range mt.Changes {
		fmt.Fprintln(w, "  "+c)
	}
	for _, n := range mt.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
	if mt.Reversible && !mt.DryRun {
		fmt.Fprintf(w, "revert now: stormguard defuse revert %s\n", mt.ID)
	}
	return nil
}

// restoreByText says what ends a mitigation at its TTL.
func restoreByText(mt defuse.Mitigation) string {
	switch mt.RestoreBy {
	case defuse.RestoreByKernel:
		return "the kernel ends it by itself"
	case defuse.RestoreBySystemdTimer:
		if mt.RestoreUnit == "" { // a dry run starts none
			return "restored then by a transient systemd timer, even if stormguard is not running"
		}
		return "restored then by the systemd timer " + mt.RestoreUnit + ", even if stormguard is not running"
	case defuse.RestoreByProcess:
		if mt.RestorePID == 0 { // a dry run starts none
			return "restored then by a detached restore process, even if stormguard is killed"
		}
		return fmt.Sprintf("restored then by the detached restore process %d, even if stormguard is killed", mt.RestorePID)
	}
	return "restored by the next stormguard run after that"
}

func newDefuseListCmd() *cobra.Command {
	var o defuseOpts
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List active mitigations (expired ones are restored and removed first)",
		Long: `List the active mitigations. With --json, one JSON object per line, each with
an "expires" timestamp; nothing at all when none is active.`,
		Example: `  stormguard defuse list
  stormguard defuse list --json
  stormguard defuse list --netns /var/run/netns/blue`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := o.manager(cmd, 0)
			if err != nil {
				return usageErr(err)
			}
			ms, err := m.List(cmd.Context())
			if err != nil {
				return defuseErr(err)
			}
			out := cmd.OutOrStdout()
			if o.json {
				enc := json.NewEncoder(out)
				for _, mt := range ms {
					if err := enc.Encode(mt); err != nil {
						return err
					}
				}
				return nil
			}
			if len(ms) == 0 {
				fmt.Fprintln(out, "no active mitigations")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tACTION\tPORT\tEXPIRES\tLEFT\tRESTORE-BY\tNETNS")
			for _, mt := range ms {
				ns := mt.NetNS
				if ns == "" {
					ns = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%v\t%s\n", mt.ID, mt.Action, mt.Port, mt.Expires.Format(time.RFC3339),
					time.Until(mt.Expires).Round(time.Second), mt.RestoreBy, ns)
			}
			return tw.Flush()
		},
	}
	o.flags(cmd, true)
	return cmd
}

func newDefuseRevertCmd() *cobra.Command {
	var o defuseOpts
	var all bool
	cmd := &cobra.Command{
		Use:   "revert ID... | --all",
		Short: "Revert mitigations now (restores Valkey config and sysctls, deletes rules)",
		Long: `Revert the given mitigations (ids from 'stormguard defuse list'), or every
active one with --all: nftables rules are deleted, Valkey config and sysctls
are put back to the values recorded when the mitigation was applied.`,
		Example: `  stormguard defuse revert --all
  stormguard defuse revert 3f2a9c1d
  stormguard defuse revert --all --netns /var/run/netns/blue`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !all && len(args) == 0 {
				return usageErr(errors.New("revert needs mitigation ids (see stormguard defuse list) or --all"))
			}
			if all && len(args) > 0 {
				return usageErr(errors.New("give ids or --all, not both"))
			}
			m, err := o.manager(cmd, 0)
			if err != nil {
				return usageErr(err)
			}
			ctx := cmd.Context()
			if all {
				ms, err := m.List(ctx)
				if err != nil {
					return defuseErr(err)
				}
				for _, mt := range ms {
					args = append(args, mt.ID)
				}
			}
			return revertIDs(ctx, cmd.OutOrStdout(), m, args)
		},
	}
	o.flags(cmd, true)
	cmd.Flags().BoolVar(&all, "all", false, "revert every active mitigation")
	return cmd
}

func revertIDs(ctx context.Context, out io.Writer, m *defuse.Manager, ids []string) error {
	var errs []error
	for _, id := range ids {
		mt, err := m.Revert(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "reverted %s (%s)\n", mt.ID, mt.Action)
	}
	return defuseErr(errors.Join(errs...))
}

func newDefusePlanCmd() *cobra.Command {
	var o defuseOpts
	var port int
	var window, ttl time.Duration
	cmd := &cobra.Command{
		Use:   "plan [--valkey ADDR] [--netns PATH] [--json]",
		Short: "Read the target once and propose mitigations, in order, with why, effect, risk and command",
		Long: `Read the target once (accept queue, ListenOverflows rate over --window,
somaxconn, conntrack fill, Valkey's clients, maxclients and rejections) and
propose mitigations, least risky first, each with why, the expected effect,
the risk and the exact 'stormguard defuse apply' command. Nothing is changed.

--json prints {"verdict","snapshot","proposals":[{"order","action","why",
"effect","risk","command"}]}; see docs/defuse.md.`,
		Example: `  stormguard defuse plan --valkey 127.0.0.1:6379
  stormguard defuse plan --valkey 127.0.0.1:6379 --ttl 2m --json
  stormguard defuse plan --netns /var/run/netns/blue --port 6379`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if window <= 0 || ttl <= 0 {
				return usageErr(errors.New("--window and --ttl must be positive"))
			}
			m, err := o.manager(cmd, port)
			if err != nil {
				return usageErr(err)
			}
			if _, err := m.Expire(cmd.Context()); err != nil {
				return defuseErr(err)
			}
			snap := defuse.ReadSnapshot(cmd.Context(), m.NetNS, m.Valkey, window)
			target := defuse.PlanTarget{NetNS: o.netns, TTL: ttl.String()}
			if o.valkey != "" {
				target.Valkey = m.Valkey.HostPort()
			}
			plan := defuse.Propose(snap, target)
			out := cmd.OutOrStdout()
			// The plan is printed either way (the kernel half still
			// counts in a storm); a --valkey that cannot be reached
			// is then a connection error, exit 2, as for sample and
			// check.
			unreachable := func() error {
				if verr, ok := snap.Errors["valkey"]; ok && o.valkey != "" {
					return usageErr(fmt.Errorf("%w at %s: %s", errValkeyUnreachable, m.Valkey, verr))
				}
				return nil
			}
			if o.json {
				if err := json.NewEncoder(out).Encode(plan); err != nil {
					return err
				}
				return unreachable()
			}
			fmt.Fprintf(out, "port %d: %s\n", snap.Port, plan.Verdict)
			for _, k := range slices.Sorted(maps.Keys(snap.Errors)) {
				fmt.Fprintf(out, "  unavailable %s: %s\n", k, snap.Errors[k])
			}
			if len(plan.Proposals) == 0 {
				fmt.Fprintln(out, "no mitigation proposed")
			}
			for _, p := range plan.Proposals {
				fmt.Fprintf(out, "\n%d. %s\n   why:    %s\n   effect: %s\n   risk:   %s\n   run:    %s\n", p.Order, p.Action, p.Why, p.Effect, p.Risk, p.Command)
			}
			return unreachable()
		},
	}
	o.flags(cmd, true)
	cmd.Flags().IntVar(&port, "port", 0, "Valkey's port (default: from --valkey, else 6379)")
	cmd.Flags().DurationVar(&window, "window", time.Second, "how long to watch counters for rates")
	cmd.Flags().DurationVar(&ttl, "ttl", 300*time.Second, "TTL to put in the proposed commands")
	return cmd
}
