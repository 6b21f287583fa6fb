package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/source"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

type sampleOpts struct {
	valkey   string
	conn     valkeyConnFlags
	netns    string
	count    int
	interval time.Duration
	json     bool
	procRoot string
	ebpf     bool
}

func newSampleCmd() *cobra.Command {
	var o sampleOpts
	cmd := &cobra.Command{
		Use:   "sample --valkey ADDR [--count N] [--interval D] [--json]",
		Short: "Take N raw samples of every storm signal and print them",
		Long: `Take N samples of one Valkey listener and print them: accept-queue depth,
peak and limit, SYN_RECV and established sockets for the port, the
namespace's TCP counters, conntrack, NIC allowance counters and Valkey's
INFO fields read over one reserved connection.

A signal that cannot be read is shown as null (JSON) or "-" (table), and the
reason is given under "errors" (JSON) or "unavailable signals" (after the
table); the other signals are still printed. The keys: docs/sample.md.

Exit codes: 0 the samples were taken (also with signals unavailable); 2 bad
flags or address, a missing --netns, or a Valkey that none of the samples
reached (the kernel part is still printed first; one line on stderr says why).`,
		Example: `  stormguard sample --valkey 127.0.0.1:6379
  stormguard sample --valkey valkey://default:secret@10.0.0.5:6379 --count 10 --interval 200ms --json
  VALKEY_PASSWORD=secret stormguard sample --valkey 127.0.0.1:6379 --netns /var/run/netns/blue --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := resolveTarget(o.valkey, o.conn, o.netns)
			if err != nil {
				return usageErr(err)
			}
			t.ProcRoot = o.procRoot
			if o.count < 1 {
				return usageErr(fmt.Errorf("--count must be at least 1, got %d", o.count))
			}
			if o.interval <= 0 {
				return usageErr(fmt.Errorf("--interval must be positive, got %s", o.interval))
			}
			return runSample(cmd.Context(), cmd.OutOrStdout(), t, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.valkey, "valkey", "", "Valkey address: HOST:PORT, valkey://[user:pass@]host:port[/db] or valkeys://… (TLS)")
	o.conn.register(f)
	f.StringVar(&o.netns, "netns", "", "network namespace of the target, e.g. /var/run/netns/NAME or /proc/PID/ns/net")
	f.IntVar(&o.count, "count", 1, "number of samples to take")
	f.DurationVar(&o.interval, "interval", 500*time.Millisecond, "time between samples")
	f.BoolVar(&o.json, "json", false, "print one JSON object per line")
	f.BoolVar(&o.ebpf, "ebpf", true, ebpfFlagHelp)
	f.StringVar(&o.procRoot, "proc-root", "/proc", "procfs mount to read kernel files from")
	_ = f.MarkHidden("proc-root")
	_ = cmd.MarkFlagRequired("valkey")
	return cmd
}

// resolveTarget parses the address flags shared by every command.
func resolveTarget(valkey string, conn valkeyConnFlags, ns string) (source.Target, error) {
	a, err := conn.address(valkey)
	if err != nil {
		return source.Target{}, err
	}
	if ns != "" {
		if err := netns.Check(ns); err != nil {
			return source.Target{}, err
		}
	}
	return source.Target{Addr: a, NetNS: ns}, nil
}

// errValkeyUnreachable reports that the Valkey connection could not be made.
var errValkeyUnreachable = errors.New("cannot reach Valkey")

func runSample(ctx context.Context, out io.Writer, t source.Target, o sampleOpts) error {
	set := source.Open(ctx, source.Options{Target: t, Interval: o.interval, Version: version, NoEBPF: !o.ebpf})
	defer set.Close()
	sm := &sample.Sampler{Target: t.Name(), Port: t.Port(), NetNS: t.NetNS, Sources: set.Sources, Interval: o.interval}

	table := !o.json
	if table {
		// Fixed widths, not a tabwriter: rows stream as they are taken.
		fmt.Fprintf(out, rowFormat, "TIME", "TARGET", "ACCEPTQ", "PEAK", "LIMIT", "SYN_RECV", "ESTAB", "OVERFLOWS", "CONNTRACK", "CLIENTS", "MAXCLI", "REJECTED", "PING_MS")
	}
	enc := json.NewEncoder(out)
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	var last *sample.Sample
	// Valkey counts as unreachable only when no sample reached it: at a
	// short --interval on a busy machine the first sample's connect can
	// miss its deadline while the rest answer.
	reached, valkeyErr := false, ""
	for i := 0; i < o.count; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				i = o.count
				continue
			case <-tick.C:
			}
		}
		s := sm.Once(ctx)
		last = s
		if s.Valkey != nil {
			reached = true
		} else if reason, ok := s.Errors["valkey"]; ok {
			valkeyErr = source.OneShotReason(reason)
		}
		if o.json {
			if err := enc.Encode(s); err != nil {
				return err
			}
			continue
		}
		writeRow(out, s)
	}
	// The footer explains the last row's missing signals: the first one's
	// would also list what only needs a previous sample (handshake_pending
	// on every run of --count 2 or more).
	if table && last != nil && len(last.Errors) > 0 {
		keys := make([]string, 0, len(last.Errors))
		for k := range last.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintln(out, "\nunavailable signals:")
		for _, k := range keys {
			fmt.Fprintf(out, "  %s: %s\n", k, source.WithoutRetry(last.Errors[k]))
		}
	}
	// The contract: an unreachable Valkey is a connection error (exit 2),
	// though the kernel signals were printed.
	if !reached && valkeyErr != "" {
		if t.Addr.TLS && sample.MissedDeadline(valkeyErr) {
			// Which deadline fires first, the sample's or the TLS
			// handshake's own (whose error carries the hint), is a race
			// on a busy machine: a TLS target that never answered gets
			// the same hint either way.
			valkeyErr += valkeyconn.TLSNoAnswerHint
		}
		return usageErr(fmt.Errorf("%w at %s: %s", errValkeyUnreachable, t.Addr, valkeyErr))
	}
	return nil
}

const rowFormat = "%-12s  %-21s %7s %5s %5s %8s %6s %9s %13s %7s %6s %8s %7s\n"

func writeRow(w io.Writer, s *sample.Sample) {
	d := func(p *uint64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	}
	var depth, peak, limit, ov, ct, cl, mc, rej, ping = "-", "-", "-", "-", "-", "-", "-", "-", "-"
	if s.Listen != nil {
		depth, peak, limit = d(s.Listen.Depth), d(s.Listen.DepthMax), d(s.Listen.Limit)
	}
	if s.TCP != nil {
		ov = d(s.TCP.ListenOverflows)
	}
	if s.Conntrack != nil {
		ct = d(s.Conntrack.Count) + "/" + d(s.Conntrack.Max)
	}
	if s.Valkey != nil {
		cl, mc, rej = d(s.Valkey.ConnectedClients), d(s.Valkey.MaxClients), d(s.Valkey.RejectedConnections)
		if s.Valkey.PingMS != nil {
			ping = fmt.Sprintf("%.2f", *s.Valkey.PingMS)
		}
	}
	fmt.Fprintf(w, rowFormat, s.Time.Format("15:04:05.000"), s.Target, depth, peak, limit,
		d(s.SynRecv), d(s.Established), ov, ct, cl, mc, rej, ping)
}

// ebpfFlagHelp documents --ebpf on every command that samples.
const ebpfFlagHelp = "measure accept wait, SYN rate and this listener's overflows with eBPF (needs root or CAP_BPF+CAP_PERFMON, kernel BTF; also off when STORMGUARD_EBPF=0)"
