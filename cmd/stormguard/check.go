package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/internal/checklist"
	"github.com/stormguard/stormguard/internal/netns"
)

type checkOpts struct {
	valkey       string
	conn         valkeyConnFlags
	netns        string
	format       string
	failOn       string
	role         string
	writeSysctl  string
	window       time.Duration
	timeout      time.Duration
	noClientList bool
}

func newCheckCmd() *cobra.Command {
	var o checkOpts
	cmd := &cobra.Command{
		Use:   "check [--valkey ADDR] [--format table|json|markdown] [--fail-on warning|critical]",
		Short: "Audit host, Valkey and clients against the connection-storm checklist",
		Long: `Audit one Valkey listener and its host against the connection-storm
checklist: the namespace's TCP sysctls (somaxconn vs tcp-backlog, SYN cookies,
tcp_abort_on_overflow, SYN retry schedule), conntrack fill and churn, Valkey's
configuration and counters (maxclients, fd limit, keepalive, accept caps, TLS),
accept-queue overflows and rejections seen so far, cloud NIC allowance counters,
and client hygiene (CLIENT LIST, only when Valkey is calm).

Each finding has a stable id, a severity (ok, info, warning, critical), the
evidence and the exact fix; docs/checklist.md explains each id. Without
--valkey only kernel, conntrack and NIC rules run. Facts that cannot be read
(not root, module not loaded, no ENA NIC) become info findings saying why.

check opens one short-lived Valkey connection and reads the counters twice,
--window apart, to see whether overflows or rejections are happening now.

Exit codes: 0 no finding at or above --fail-on; 1 a finding at or above
--fail-on (default critical); 2 usage error, or Valkey could not be reached
(the other findings are still printed).`,
		Example: `  stormguard check --valkey 127.0.0.1:6379
  stormguard check --valkey valkey://default:secret@10.0.0.5:6379 --format json --fail-on warning
  stormguard check --netns /var/run/netns/blue --valkey 127.0.0.1:6379 --write-sysctl 90-stormguard.conf
  stormguard check --role client        # kernel audit of an application host`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.valkey, "valkey", "", "Valkey address: HOST:PORT, valkey://[user:pass@]host:port[/db] or valkeys://… (TLS); omit for a kernel-only audit")
	o.conn.register(f)
	f.StringVar(&o.netns, "netns", "", "network namespace of the target, e.g. /var/run/netns/NAME or /proc/PID/ns/net")
	f.StringVar(&o.format, "format", "table", "output format: table, json or markdown")
	f.StringVar(&o.failOn, "fail-on", "critical", "exit 1 when a finding is at or above this severity: warning or critical")
	f.StringVar(&o.role, "role", "server", "what this host is: server (runs Valkey) or client (runs applications)")
	f.StringVar(&o.writeSysctl, "write-sysctl", "", "write a sysctl.d snippet of the recommended kernel settings to this file")
	f.DurationVar(&o.window, "window", time.Second, "time between the two counter reads")
	f.DurationVar(&o.timeout, "timeout", 3*time.Second, "bound on the Valkey dial and each command")
	f.BoolVar(&o.noClientList, "no-client-list", false, "never run CLIENT LIST")
	return cmd
}

func (o checkOpts) validate() (checklist.Options, checklist.Format, checklist.Severity, error) {
	var co checklist.Options
	format, err := checklist.ParseFormat(o.format)
	if err != nil {
		return co, "", 0, err
	}
	failOn, err := checklist.ParseSeverity(o.failOn)
	if err != nil || failOn == checklist.OK {
		return co, "", 0, fmt.Errorf("--fail-on %q: want info, warning or critical", o.failOn)
	}
	switch checklist.Role(o.role) {
	case checklist.RoleServer, checklist.RoleClient:
	default:
		return co, "", 0, fmt.Errorf("--role %q: want server or client", o.role)
	}
	if o.window <= 0 || o.window > time.Minute {
		return co, "", 0, fmt.Errorf("--window must be between 0 and 1m, got %s", o.window)
	}
	if o.timeout <= 0 {
		return co, "", 0, fmt.Errorf("--timeout must be positive, got %s", o.timeout)
	}
	co = checklist.Options{Role: checklist.Role(o.role), NetNS: o.netns, Window: o.window, Timeout: o.timeout, NoClientList: o.noClientList}
	if o.netns != "" {
		if err := netns.Check(o.netns); err != nil {
			return co, "", 0, err
		}
	}
	if o.valkey != "" {
		a, err := o.conn.address(o.valkey)
		if err != nil {
			return co, "", 0, err
		}
		co.Valkey = &a
	} else if err := o.conn.needValkey(); err != nil {
		return co, "", 0, err
	}
	return co, format, failOn, nil
}

// runCheck audits, prints the findings on out, and shows a progress line on
// errOut only when that is a terminal (never in pipes or with --format json
// redirected).
func runCheck(ctx context.Context, out, errOut io.Writer, o checkOpts) error {
	co, format, failOn, err := o.validate()
	if err != nil {
		return usageErr(err)
	}
	pr := newProgress(errOut, "stormguard check", isTTY(errOut))
	co.Progress = pr.Step
	facts, err := checklist.Gather(ctx, co)
	pr.Done()
	if err != nil {
		return usageErr(fmt.Errorf("check interrupted: %w", err))
	}
	fs := checklist.Evaluate(facts)
	if err := checklist.Render(out, format, fs, checklist.RenderOptions{Color: format == checklist.FormatTable && isTerminal(out)}); err != nil {
		return fmt.Errorf("write findings: %w", err)
	}
	if o.writeSysctl != "" {
		var b bytes.Buffer
		if err := checklist.WriteSysctl(&b, facts, fs); err != nil {
			return usageErr(err)
		}
		if err := os.WriteFile(o.writeSysctl, b.Bytes(), 0o644); err != nil {
			return usageErr(fmt.Errorf("write sysctl snippet: %w", err))
		}
	}
	// A Valkey that refuses the audit at maxclients is a finding; one that
	// cannot be reached at all is a connection error (exit 2).
	if co.Valkey != nil && facts.Valkey == nil && !strings.Contains(facts.ValkeyErr, "max number of clients") {
		return usageErr(fmt.Errorf("%w: %s", errValkeyUnreachable, facts.ValkeyErr))
	}
	if checklist.Worst(fs) >= failOn {
		return findingsErr()
	}
	return nil
}

// isTerminal reports whether w is a terminal and NO_COLOR is unset: piped
// output stays plain.
func isTerminal(w io.Writer) bool {
	return os.Getenv("NO_COLOR") == "" && isTTY(w)
}

// isTTY reports whether w is a character device (a terminal).
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
