package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/internal/checklist"
	"github.com/stormguard/stormguard/internal/discover"
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
	noDiscover   bool
	agent        string
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
--valkey, check discovers the local valkey-server and redis-server processes
as watch does (only those in --netns when it is given) and audits each of
their client ports in its own namespace; finding none, with --no-discover or
with --role client, only kernel, conntrack and NIC rules run. Facts that cannot be read (not
root, module not loaded, no ENA NIC) become info findings saying why.

check opens one short-lived Valkey connection and reads the counters twice,
--window apart, to see whether overflows or rejections are happening now.

Exit codes: 0 no finding at or above --fail-on; 1 a finding at or above
--fail-on (default critical); 2 usage error, or the --valkey server could not
be reached (the other findings are still printed; a discovered server that
cannot be reached is its valkey-not-checked finding).`,
		Example: `  stormguard check --valkey 127.0.0.1:6379
  stormguard check --valkey valkey://default:secret@10.0.0.5:6379 --format json --fail-on warning
  stormguard check --netns /var/run/netns/blue --valkey 127.0.0.1:6379 --write-sysctl 90-stormguard.conf
  stormguard check                      # every local valkey-server, discovered
  stormguard check --role client        # kernel audit of an application host`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.valkey, "valkey", "", "Valkey address: HOST:PORT, valkey://[user:pass@]host:port[/db] or valkeys://… (TLS); omit to audit every local server discovered")
	o.conn.register(f)
	f.StringVar(&o.netns, "netns", "", "network namespace of the target, e.g. /var/run/netns/NAME or /proc/PID/ns/net")
	f.StringVar(&o.format, "format", "table", "output format: table, json or markdown")
	f.StringVar(&o.failOn, "fail-on", "critical", "exit 1 when a finding is at or above this severity: warning or critical (info: any finding that is not ok)")
	f.StringVar(&o.role, "role", "server", "what this host is: server (runs Valkey) or client (runs applications)")
	f.StringVar(&o.writeSysctl, "write-sysctl", "", "write a sysctl.d snippet of the recommended kernel settings to this file")
	f.DurationVar(&o.window, "window", time.Second, "time between the two counter reads")
	f.DurationVar(&o.timeout, "timeout", 3*time.Second, "bound on the Valkey dial and each command")
	f.BoolVar(&o.noClientList, "no-client-list", false, "never run CLIENT LIST")
	f.StringVar(&o.agent, "agent", defaultAgentURL, "a running stormguard watch to ask for Valkey's counters when Valkey refuses check at maxclients (empty: never)")
	f.BoolVar(&o.noDiscover, "no-discover", false, "without --valkey: audit the kernel only, do not look for local servers")
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
	} else if co.Role != checklist.RoleServer || o.noDiscover || o.conn.tlsSet() {
		// A server-role check discovers servers to use a password with;
		// discovered ports are plain (a TLS port needs valkeys://).
		if err := o.conn.needValkey(); err != nil {
			return co, "", 0, err
		}
	}
	return co, format, failOn, nil
}

// checkTarget is one audit: a Valkey given with --valkey, one discovered,
// or none (kernel only).
type checkTarget struct {
	co checklist.Options
	// label names a discovered server in the output ("" for --valkey and
	// kernel-only audits, whose output is unchanged).
	label string
	facts *checklist.Facts
	fs    []checklist.Finding
}

// checkTargets returns what to audit. Without --valkey a server-role check
// discovers local valkey-server and redis-server processes as watch does
// (only those in --netns when it is given), each in its own namespace, and
// audits every client port they listen on; finding none it audits the
// kernel only and says so.
func (o checkOpts) checkTargets(co checklist.Options) ([]*checkTarget, string, error) {
	if co.Valkey != nil || co.Role != checklist.RoleServer {
		return []*checkTarget{{co: co}}, "", nil
	}
	if o.noDiscover {
		return []*checkTarget{{co: co}}, "no --valkey given (--no-discover)", nil
	}
	servers, err := discover.Scanner{}.Scan()
	if err != nil {
		return nil, "", fmt.Errorf("discover local servers: %w", err)
	}
	var want uint64
	if o.netns != "" {
		if want, err = netnsInode(o.netns); err != nil {
			return nil, "", err
		}
	}
	var ts []*checkTarget
	for _, srv := range servers {
		if o.netns != "" && srv.NetNSInode != want {
			continue
		}
		for _, hp := range srv.Addrs {
			a, err := o.conn.address(hp)
			if err != nil {
				return nil, "", err
			}
			c := co
			c.Valkey = &a
			c.NetNS = o.netns
			if c.NetNS == "" {
				c.NetNS = srv.NetNS
			}
			label := fmt.Sprintf("%s (%s pid %d", hp, srv.Comm, srv.PID)
			if c.NetNS != "" {
				label += ", namespace " + c.NetNS
			}
			ts = append(ts, &checkTarget{co: c, label: label + ")"})
		}
	}
	if len(ts) == 0 {
		return []*checkTarget{{co: co}}, "no --valkey given and no local valkey-server or redis-server process found", nil
	}
	return ts, "", nil
}

// netnsInode identifies a namespace file, as discovery does.
func netnsInode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("network namespace %s: %w", path, err)
	}
	return uint64(st.Ino), nil
}

// maxParallelAudits bounds how many discovered servers are audited at once
// (each holds one Valkey connection for its --window).
const maxParallelAudits = 8

// runCheck audits, prints the findings on out, and shows a progress line on
// errOut only when that is a terminal (never in pipes or with --format json
// redirected).
func runCheck(ctx context.Context, out, errOut io.Writer, o checkOpts) error {
	co, format, failOn, err := o.validate()
	if err != nil {
		return usageErr(err)
	}
	ts, noServer, err := o.checkTargets(co)
	if err != nil {
		return usageErr(err)
	}
	pr := newProgress(errOut, "stormguard check", isTTY(errOut))
	if len(ts) == 1 {
		ts[0].co.Progress = pr.Step
	} else {
		pr.Step(fmt.Sprintf("auditing %d discovered servers", len(ts)))
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelAudits)
	errs := make([]error, len(ts))
	for i, t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.facts, errs[i] = checklist.Gather(ctx, t.co)
		}()
	}
	wg.Wait()
	pr.Done()
	if err := errors.Join(errs...); err != nil {
		return usageErr(fmt.Errorf("check interrupted: %w", err))
	}
	var all []checklist.Finding
	for _, t := range ts {
		if noServer != "" {
			t.facts.ValkeyErr = noServer
		}
		if t.co.Valkey != nil && t.facts.Valkey == nil && o.agent != "" && strings.Contains(t.facts.ValkeyErr, "max number of clients") {
			t.facts.Agent = agentFacts(ctx, o.agent, t.co.Valkey.HostPort(), t.co.NetNS)
		}
		t.fs = checklist.Evaluate(t.facts)
		if t.co.Valkey != nil {
			name := t.co.Valkey.HostPort()
			if t.co.NetNS != "" {
				name += " in " + t.co.NetNS
			}
			for i := range t.fs {
				t.fs[i].Target = name
			}
		}
		all = append(all, t.fs...)
	}
	ro := checklist.RenderOptions{Color: format == checklist.FormatTable && isTerminal(out)}
	if format == checklist.FormatJSON || ts[0].label == "" {
		if err := checklist.Render(out, format, all, ro); err != nil {
			return fmt.Errorf("write findings: %w", err)
		}
	} else {
		for i, t := range ts {
			var err error
			switch {
			case i > 0 && format == checklist.FormatMarkdown:
				_, err = fmt.Fprintf(out, "\n## %s\n\n", t.label)
			case format == checklist.FormatMarkdown:
				_, err = fmt.Fprintf(out, "## %s\n\n", t.label)
			case i > 0:
				_, err = fmt.Fprintf(out, "\n== %s\n", t.label)
			default:
				_, err = fmt.Fprintf(out, "== %s\n", t.label)
			}
			if err == nil {
				err = checklist.Render(out, format, t.fs, ro)
			}
			if err != nil {
				return fmt.Errorf("write findings: %w", err)
			}
		}
	}
	if o.writeSysctl != "" {
		// The recommendations are per namespace: one snippet for one.
		for _, t := range ts[1:] {
			if t.co.NetNS != ts[0].co.NetNS {
				return usageErr(fmt.Errorf("--write-sysctl: the discovered servers are in several network namespaces; pick one with --netns or --valkey"))
			}
		}
		var b bytes.Buffer
		if err := checklist.WriteSysctl(&b, ts[0].facts, ts[0].fs); err != nil {
			return usageErr(err)
		}
		if err := os.WriteFile(o.writeSysctl, b.Bytes(), 0o644); err != nil {
			return usageErr(fmt.Errorf("write sysctl snippet: %w", err))
		}
	}
	// A Valkey that refuses the audit at maxclients is a finding; one given
	// with --valkey that cannot be reached at all is a connection error
	// (exit 2). A discovered server that cannot be reached (it exited since
	// the scan, or needs a password) is only its valkey-not-checked finding.
	for _, t := range ts {
		if t.label == "" && t.co.Valkey != nil && t.facts.Valkey == nil && !strings.Contains(t.facts.ValkeyErr, "max number of clients") {
			return usageErr(fmt.Errorf("%w: %s", errValkeyUnreachable, t.facts.ValkeyErr))
		}
	}
	if checklist.Worst(all) >= failOn {
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
