package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/dialer"
	"github.com/stormguard/stormguard/internal/simulate"
)

type simulateOpts struct {
	fleet      simulate.Fleet
	model      simulate.Model
	acceptRate float64
	calibrate  string
	json       bool
	noObserve  bool
	fleetHint  int
	dialerRate float64
	syncookies int
	advise     bool
	// queueGiven: --somaxconn or --tcp-backlog was set (with --calibrate
	// they describe the server to predict, not the lab's).
	queueGiven bool
}

func newSimulateCmd() *cobra.Command {
	var o simulateOpts
	o.model = simulate.DefaultModel()
	cmd := &cobra.Command{
		Use:   "simulate --clients N --strategy S [policy flags] --scenario kill|restart|blip [--json]",
		Short: "Predict a connection storm without running it (a discrete-event model)",
		Long: `Predict what a fleet of N clients does to a Valkey after a disruption, without
running it: a discrete-event model in simulated time of

  - the clients: each one an independent instance running the strategy's real
    code (package backoff's policies as the storm lab runs them, or one
    dialer.Dialer per instance for stormguard), with the lab's PING period,
    connect and command timeouts;
  - the kernel on the Valkey host: the accept queue (min(tcp-backlog,
    somaxconn)), the SYN queue with or without syncookies, the client's SYN
    retransmits (tcp_syn_retries, tcp_syn_linear_timeouts), the silently
    dropped final ACK and the server's SYN-ACK retransmits, or a reset with
    --abort-on-overflow;
  - Valkey's accept loop: at most max-new-connections-per-cycle accepts per
    event-loop turn (max-new-tls-connections-per-cycle with --tls), a cost
    per turn, per accepted connection, per TLS handshake and per command of
    the clients already back;
  - the host: with --host-cores, Valkey shares that many cores with the
    client side (CPU per connected client, --client-cpu, and a core while
    it has queued work) and other work (--host-load), and gets its fair
    share: a load generator on Valkey's machine slows it more the larger
    the fleet.

It prints the keys of "stormguard storm --json" that apply (strategy, clients,
connect_attempts, peak_connects_per_sec, listen_overflows, time_to_recover_ms,
recovered, ...) and "model", the parameters used.

The costs default to rough values for a small VM. --accept-rate R sets the
per-connection cost so that an idle loop accepts R connections/s.
--calibrate FILE fits the costs (server and load generator) to a
"stormguard storm --json" result (one object or a --compare array) of the
same scenario: run the lab once at one fleet size, then simulate others.
The fit uses the accept queue a --spawn result records (somaxconn,
tcp_backlog), and so does the prediction unless --somaxconn or
--tcp-backlog is given.

Strategies: ` + strings.Join(simulate.Strategies, ", ") + ` (the client libraries
are not modelled). 100,000 clients take a few seconds. See docs/simulate.md.`,
		Example: `  stormguard simulate --clients 100000 --strategy stormguard --scenario kill --period 1s   # 100,000 PINGs/s; at the default 100ms, 1M/s: more than one Valkey serves
  stormguard simulate --clients 20000 --strategy glide --scenario restart --somaxconn 4096 --json
  stormguard storm --spawn --somaxconn 128 --clients 6000 --strategy immediate --scenario kill --json > lab.json
  stormguard simulate --calibrate lab.json --clients 15000 --strategy stormguard --scenario kill`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("accept-rate") && o.calibrate != "" {
				return usageErr(errors.New("--accept-rate and --calibrate are mutually exclusive"))
			}
			// A --cmd-cost or --conn-cost given with --calibrate is a
			// measurement: the fit keeps it.
			o.model.CmdCostMeasured = cmd.Flags().Changed("cmd-cost") && o.calibrate != ""
			o.model.ConnCostMeasured = cmd.Flags().Changed("conn-cost") && o.calibrate != ""
			o.queueGiven = cmd.Flags().Changed("somaxconn") || cmd.Flags().Changed("tcp-backlog")
			return runSimulate(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.fleet.Clients, "clients", 0, "number of clients (each its own instance), up to 1,000,000")
	f.StringVar(&o.fleet.Strategy, "strategy", "", "reconnect strategy: "+strings.Join(simulate.Strategies, ", "))
	f.StringVar(&o.fleet.Scenario, "scenario", "kill", "disruption: kill, restart, blip")
	f.BoolVar(&o.json, "json", false, "print one JSON object")
	f.StringVar(&o.calibrate, "calibrate", "", "fit the server's costs to this storm --json result")
	f.BoolVar(&o.advise, "advise", false, "instead of one strategy, simulate candidate settings for this fleet and server and rank them: which recover fastest without overflow")
	f.Float64Var(&o.acceptRate, "accept-rate", 0, "new connections/s an idle Valkey accepts (sets the per-connection cost)")
	f.IntVar(&o.model.Somaxconn, "somaxconn", o.model.Somaxconn, "net.core.somaxconn on the Valkey host")
	f.IntVar(&o.model.TCPBacklog, "tcp-backlog", o.model.TCPBacklog, "Valkey tcp-backlog")
	f.IntVar(&o.syncookies, "syncookies", 1, "net.ipv4.tcp_syncookies: 0 drops SYNs beyond the backlog, 1 or 2 sends cookies")
	f.BoolVar(&o.model.AbortOnOverflow, "abort-on-overflow", false, "net.ipv4.tcp_abort_on_overflow=1: reset instead of dropping the final ACK")
	f.IntVar(&o.model.SynLinearTimeouts, "syn-linear-timeouts", o.model.SynLinearTimeouts, "net.ipv4.tcp_syn_linear_timeouts (0: classic 1,2,4… s)")
	f.IntVar(&o.model.MaxNewConnsPerCycle, "max-new-connections-per-cycle", o.model.MaxNewConnsPerCycle, "Valkey's accepts per event-loop turn")
	f.IntVar(&o.model.MaxNewTLSConnsPerCycle, "max-new-tls-connections-per-cycle", o.model.MaxNewTLSConnsPerCycle, "Valkey's TLS accepts per event-loop turn")
	f.BoolVar(&o.model.TLS, "tls", false, "every connection is TLS (handshake cost, TLS accept cap)")
	f.DurationVar(&o.model.RTT, "rtt", o.model.RTT, "network round trip between clients and Valkey")
	f.IntVar(&o.model.NetdevBacklog, "netdev-backlog", 0, "clients and Valkey on one loopback (the lab): net.core.netdev_max_backlog, the retransmits one timer tick may send before the rest are dropped (0: no limit, a fleet on many hosts)")
	f.IntVar(&o.model.HZ, "hz", o.model.HZ, "CONFIG_HZ of Valkey's host: TCP retransmit timers fire on the timer wheel's ticks (-1: exact timeouts)")
	f.DurationVar(&o.model.ConnCost, "conn-cost", o.model.ConnCost, "Valkey main-thread time per accepted connection (with --calibrate: measured, kept by the fit)")
	f.DurationVar(&o.model.KillCost, "kill-cost", o.model.KillCost, "kill: Valkey's time per client freed by CLIENT KILL (the event loop accepts nothing meanwhile)")
	f.DurationVar(&o.model.ExitCost, "exit-cost", o.model.ExitCost, "restart: how long the killed server's exit takes per client connection; its listener takes SYNs that nothing accepts until the last close")
	f.DurationVar(&o.model.NoticeCost, "notice-cost", o.model.NoticeCost, "client side CPU to notice one lost connection, when the fleet is one load generator (0: many hosts)")
	f.DurationVar(&o.model.AnswerCost, "answer-cost", o.model.AnswerCost, "client side CPU to write a new connection's first PING and to read its answer, each (0: --notice-cost)")
	f.DurationVar(&o.model.DialCost, "dial-cost", o.model.DialCost, "client side CPU per connect(), when the fleet is one load generator (0: many hosts)")
	f.DurationVar(&o.model.RefusedDialCost, "refused-dial-cost", 0, "client side CPU per dial a down server refuses, measured (0: 0.52 of --dial-cost)")
	f.Float64Var(&o.model.ClientShare, "client-share", o.model.ClientShare, "share of Valkey's CPU a load generator on its machine takes while it has work (0..0.9)")
	f.IntVar(&o.model.HostCores, "host-cores", 0, "cores Valkey shares with the load generator and other work (0: its own; --calibrate on a single-host lab run: this machine's)")
	f.DurationVar(&o.model.ClientCPU, "client-cpu", 0, "with --host-cores: the client side's CPU per connected client per --period")
	f.Float64Var(&o.model.HostLoad, "host-load", 0, "with --host-cores: other runnable threads on Valkey's host")
	f.Float64Var(&o.model.ClientBurst, "client-burst", o.model.ClientBurst, "how bursty that client side is: its busiest 100 ms over its mean (1 or 0: even)")
	f.DurationVar(&o.model.TLSCost, "tls-cost", o.model.TLSCost, "Valkey main-thread time per TLS handshake")
	f.DurationVar(&o.model.CmdCost, "cmd-cost", o.model.CmdCost, "Valkey main-thread time per command of a connected client (with --calibrate: measured, kept by the fit)")
	f.DurationVar(&o.model.CycleCost, "cycle-cost", o.model.CycleCost, "fixed time of an event-loop turn")
	f.Float64Var(&o.model.ClientDialRate, "client-dial-rate", 0, "connect() calls/s the whole client side can make (0: unlimited; a lab generator has a ceiling)")
	f.DurationVar(&o.fleet.Period, "period", 100*time.Millisecond, "time between one client's PINGs")
	f.DurationVar(&o.fleet.ConnectTimeout, "connect-timeout", 2*time.Second, "connect timeout of every strategy")
	f.DurationVar(&o.fleet.CommandTimeout, "command-timeout", time.Second, "timeout of each PING")
	f.DurationVar(&o.fleet.Hold, "hold", 6*time.Second, "how long the fleet was up before the disruption (the dialer's StableAfter is 5s)")
	f.DurationVar(&o.fleet.Down, "down", time.Second, "restart: how long the server stays down")
	f.DurationVar(&o.fleet.Blip, "blip", 2*time.Second, "blip: how long packets to the port are dropped")
	f.DurationVar(&o.fleet.Duration, "duration", 30*time.Second, "longest simulated time after the disruption (≤ 10m)")
	f.Uint64Var(&o.fleet.Seed, "seed", 1, "seed of every random draw")
	f.DurationVar(&o.fleet.BucketPhase, "bucket-phase", 0, "how long before the disruption the first 100ms bucket of the timeline starts, within (0, 100ms] (a lab run's: minus its first timeline t_ms modulo 100); 0: drawn from --seed")
	f.BoolVar(&o.noObserve, "no-observe", false, "stormguard: the instances do not know connected_clients (fleet size unknown)")
	f.BoolVar(&o.fleet.ObserveCPU, "observe-cpu", false, "stormguard: the instances also read the server's CPU times before the loss (INFO clients cpu stats twice; the lab's read INFO server clients cpu stats) and start at the rate its headroom allows")
	f.IntVar(&o.fleetHint, "fleet-hint", 0, "stormguard: dialer.Options.FleetSize")
	f.Float64Var(&o.dialerRate, "dialer-accept-rate", 0, fmt.Sprintf("stormguard: dialer.Options.AcceptRate (default %d)", dialer.DefaultAcceptRate))
	f.DurationVar(&o.fleet.Policy.Delay, "delay", 100*time.Millisecond, "fixed: delay after each failure")
	f.IntVar(&o.fleet.Policy.GLIDE.Retries, "retries", backoff.GLIDEDefaultRetries, "glide: number of growing, jittered steps")
	f.IntVar(&o.fleet.Policy.GLIDE.Factor, "factor", backoff.GLIDEDefaultFactor, "glide: step factor in milliseconds")
	f.IntVar(&o.fleet.Policy.GLIDE.ExponentBase, "exponent-base", backoff.GLIDEDefaultExponentBase, "glide: growth base")
	f.IntVar(&o.fleet.Policy.GLIDE.JitterPercent, "jitter-percent", backoff.GLIDEDefaultJitterPercent, "glide: ± jitter in percent (0-100)")
	f.DurationVar(&o.fleet.Policy.Base, "base", 100*time.Millisecond, "full-jitter, equal-jitter, decorrelated: base delay")
	f.DurationVar(&o.fleet.Policy.Cap, "cap", 10*time.Second, "full-jitter, equal-jitter, decorrelated: largest delay")
	return cmd
}

// simulateResult is the printed object: the result, and the calibration
// when there was one.
type simulateResult struct {
	*simulate.Result
	Calibration *simulate.Fit `json:"calibration,omitempty"`
}

func runSimulate(ctx context.Context, out, errOut io.Writer, o simulateOpts) error {
	switch {
	case o.fleet.Strategy == "" && !o.advise:
		return usageErr(errors.New("give --strategy (" + strings.Join(simulate.Strategies, ", ") + ") or --advise"))
	case o.fleet.Strategy != "" && o.advise:
		return usageErr(errors.New("--advise compares strategies itself: do not give --strategy"))
	case o.syncookies < 0 || o.syncookies > 2:
		return usageErr(fmt.Errorf("--syncookies must be 0, 1 or 2, got %d", o.syncookies))
	case o.model.MaxNewConnsPerCycle < 1 || o.model.MaxNewTLSConnsPerCycle < 1:
		return usageErr(errors.New("--max-new-connections-per-cycle and --max-new-tls-connections-per-cycle must be within 1..1000"))
	case !finiteNonNegative(o.acceptRate):
		return usageErr(fmt.Errorf("--accept-rate must be a finite number ≥ 0, got %g", o.acceptRate))
	case o.fleetHint < 0 || !finiteNonNegative(o.dialerRate):
		return usageErr(fmt.Errorf("--fleet-hint and --dialer-accept-rate must be finite numbers ≥ 0, got %d and %g", o.fleetHint, o.dialerRate))
	case (o.fleet.Strategy != "stormguard" || o.advise) && (o.fleetHint != 0 || o.dialerRate != 0 || o.noObserve || o.fleet.ObserveCPU):
		return usageErr(errors.New("--fleet-hint, --dialer-accept-rate, --no-observe and --observe-cpu configure the stormguard strategy's dialer"))
	case o.noObserve && o.fleet.ObserveCPU:
		return usageErr(errors.New("--observe-cpu needs the instances to observe (drop --no-observe)"))
	}
	m := o.model
	m.Syncookies = o.syncookies != 0
	if o.acceptRate > 0 {
		var err error
		if m, err = withAcceptRate(m, o.acceptRate); err != nil {
			return usageErr(err)
		}
	}
	f := o.fleet
	f.Observe = !o.noObserve
	f.Dialer = dialer.Options{FleetSize: o.fleetHint, AcceptRate: o.dialerRate}
	if err := m.Validate(); err != nil {
		return usageErr(err)
	}
	check := f
	if o.advise {
		check.Strategy = "immediate"
	}
	if err := check.Validate(); err != nil {
		return usageErr(err)
	}
	var fit *simulate.Fit
	if o.calibrate != "" {
		got, err := calibrateFrom(ctx, errOut, o.calibrate, m, f, o.queueGiven)
		if err != nil {
			return err
		}
		fit, m = &got, got.Model
	}
	if o.advise {
		return runAdvise(ctx, out, errOut, m, f, fit, o.json)
	}
	res, err := simulate.Run(ctx, m, f)
	if err != nil {
		if errors.Is(err, simulate.ErrConfig) {
			return usageErr(err)
		}
		return fmt.Errorf("simulate: %w", err)
	}
	if o.json {
		return json.NewEncoder(out).Encode(simulateResult{Result: res, Calibration: fit})
	}
	writeSimulateTable(out, res, fit)
	return nil
}

// finiteNonNegative reports whether v is a usable rate: not NaN (which
// fails every comparison, so a plain v < 0 lets it through), not
// infinite, not negative.
func finiteNonNegative(v float64) bool { return v >= 0 && !math.IsInf(v, 1) }

// withAcceptRate sets m's per-connection cost so that an idle event loop
// accepts rate connections per second.
func withAcceptRate(m simulate.Model, rate float64) (simulate.Model, error) {
	per := m.MaxNewConnsPerCycle
	cost := (float64(per)/rate - m.CycleCost.Seconds()) / float64(per)
	if cost <= 0 {
		return m, fmt.Errorf("--accept-rate %g is above what --cycle-cost %s allows", rate, m.CycleCost)
	}
	m.ConnCost = time.Duration(cost * float64(time.Second))
	return m, nil
}

// calibrateFrom fits m's costs to the storm --json result in file (f: the
// fleet settings the lab ran with). The fit runs the model with the lab
// server's accept queue when the file records it (storm --spawn): a fit
// with another queue than the lab's would put its overflows down to the
// wrong costs. The returned model keeps the file's queue too unless
// queueGiven (--somaxconn or --tcp-backlog set): then m's.
func calibrateFrom(ctx context.Context, errOut io.Writer, file string, m simulate.Model, f simulate.Fleet, queueGiven bool) (simulate.Fit, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return simulate.Fit{}, usageErr(fmt.Errorf("--calibrate: %w", err))
	}
	obs, err := simulate.ParseObservations(b)
	if err != nil {
		return simulate.Fit{}, usageErr(fmt.Errorf("--calibrate %s: %w", file, err))
	}
	fmt.Fprintf(errOut, "calibrating on %d lab result(s) from %s…\n", len(obs), file)
	somaxconn, backlog, recorded, err := labQueue(obs)
	if err != nil {
		return simulate.Fit{}, usageErr(fmt.Errorf("--calibrate %s: %w", file, err))
	}
	want := m
	if recorded {
		m.Somaxconn, m.TCPBacklog = somaxconn, backlog
		fmt.Fprintf(errOut, "the lab's server ran with somaxconn %d and tcp-backlog %d (accept queue %d): the fit uses them\n",
			somaxconn, backlog, min(somaxconn, backlog))
	} else {
		fmt.Fprintf(errOut, "%s does not say the lab server's somaxconn and tcp-backlog (storm --spawn records them): the fit assumes %d and %d\n",
			file, m.Somaxconn, m.TCPBacklog)
	}
	f.Dialer, f.Seed = dialer.Options{}, 1
	if m.HostCores == 0 && sameHost(obs) {
		// The lab's fleet ran on this machine, next to Valkey: they
		// shared its cores (see internal/simulate/host.go).
		m.HostCores = runtime.NumCPU()
	}
	got, err := simulate.Calibrate(ctx, m, f, obs)
	if errors.Is(err, simulate.ErrRunaway) {
		// A lab result the model cannot follow (immediate on restart
		// redials every RTT in the model): say what to do instead.
		return simulate.Fit{}, usageErr(fmt.Errorf("--calibrate %s: %w; calibrate on a kill or blip run, or leave out the results of strategies with no delay after a refused connect", file, err))
	}
	if err != nil {
		return simulate.Fit{}, fmt.Errorf("calibrate: %w", err)
	}
	if queueGiven {
		got.Model.Somaxconn, got.Model.TCPBacklog = want.Somaxconn, want.TCPBacklog
	}
	return got, nil
}

// labQueue is the accept-queue settings the lab results record (ok false
// when none does); results that record different ones are an error: one
// fit is one server.
func labQueue(obs []simulate.Observation) (somaxconn, backlog int, ok bool, err error) {
	for _, o := range obs {
		if o.Somaxconn == nil || o.TCPBacklog == nil {
			continue
		}
		s, b := *o.Somaxconn, *o.TCPBacklog
		if s < 1 || b < 1 {
			return 0, 0, false, fmt.Errorf("somaxconn %d and tcp_backlog %d must be at least 1", s, b)
		}
		if ok && (s != somaxconn || b != backlog) {
			return 0, 0, false, fmt.Errorf("the results ran with different accept queues (somaxconn %d, tcp-backlog %d and somaxconn %d, tcp-backlog %d): calibrate on runs of one server", somaxconn, backlog, s, b)
		}
		somaxconn, backlog, ok = s, b, true
	}
	return somaxconn, backlog, ok, nil
}

// sameHost reports whether every observation's clients ran on Valkey's
// machine (storm without --hosts).
// sameHost tells whether the lab's fleet shared Valkey's cores: it ran on
// Valkey's machine (no --hosts) and Valkey was not pinned to CPUs of its
// own (--server-cpus, which pins every thread of the lab to the other
// CPUs: the clients' CPU is then not the server's, as for a fleet on
// other hosts; docs/lab.md).
func sameHost(obs []simulate.Observation) bool {
	for _, o := range obs {
		if o.Hosts != 0 || o.ServerCPUs != "" {
			return false
		}
	}
	return true
}

func writeSimulateTable(out io.Writer, r *simulate.Result, fit *simulate.Fit) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	ttr := "not recovered"
	if r.TimeToRecoverMS != nil {
		ttr = fmt.Sprintf("%d ms", *r.TimeToRecoverMS)
	}
	rows := [][2]string{
		{"strategy", r.Strategy}, {"scenario", r.Scenario}, {"clients", fmt.Sprint(r.Clients)},
		{"connect attempts", fmt.Sprint(r.ConnectAttempts)}, {"connect failures", fmt.Sprint(r.ConnectFailures)},
		{"peak connects/s (100 ms)", fmt.Sprint(r.PeakConnectsPerSec)},
		{"listen overflows", fmt.Sprint(r.ListenOverflows)}, {"time to recover (99%)", ttr},
		{"failed commands", fmt.Sprint(r.FailedCommands)},
		{"model accept rate (idle loop)", fmt.Sprintf("%.0f/s", r.Model.AcceptRate())},
		{"accept queue", fmt.Sprint(min(r.Model.Somaxconn, r.Model.TCPBacklog))},
	}
	if fit != nil {
		rows = append(rows, [2]string{"calibration error (mean relative)", fmt.Sprintf("%.2f over %d runs", fit.Error, fit.Runs)})
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	tw.Flush()
}

// runAdvise simulates every candidate against the same model and prints
// them ranked: recovered without overflows first, fastest first.
func runAdvise(ctx context.Context, out, errOut io.Writer, m simulate.Model, base simulate.Fleet, fit *simulate.Fit, asJSON bool) error {
	rows, err := simulate.Advise(ctx, m, base, simulate.Candidates(m), func(s string) { fmt.Fprintf(errOut, "simulate: %s…\n", s) })
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(out).Encode(struct {
			Advice      []simulate.Advice `json:"advice"`
			Model       simulate.Model    `json:"model"`
			Calibration *simulate.Fit     `json:"calibration,omitempty"`
		}{rows, m, fit})
	}
	fmt.Fprintf(out, "%d clients, %s, accept queue %d, model accept rate %.0f/s (idle loop); best first:\n",
		base.Clients, base.Scenario, min(m.Somaxconn, m.TCPBacklog), m.AcceptRate())
	return writeAdvice(out, rows)
}

// writeAdvice prints the ranked table of --advise and backoff --fleet.
func writeAdvice(out io.Writer, rows []simulate.Advice) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SETTING\tOVERFLOWS\tRECOVER_MS\tPEAK/S\tCONNECTS\t")
	var notes []string
	for _, r := range rows {
		if r.NotSimulated != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t\n", r.Setting)
			notes = append(notes, fmt.Sprintf("%s: not simulated to the end: %s (a redial at once after every failed connect)", r.Setting, r.NotSimulated))
			continue
		}
		ttr := "-"
		if r.TimeToRecoverMS != nil {
			ttr = fmt.Sprint(*r.TimeToRecoverMS)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t\n", r.Setting, r.ListenOverflows, ttr, r.PeakConnectsPerSec, r.ConnectAttempts)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(out, n)
	}
	return nil
}
