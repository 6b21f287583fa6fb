package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/internal/simulate"
)

// fleetOpts are backoff's --fleet mode: which settings recover a fleet of
// N clients fastest without overflowing this server, from simulate.
type fleetOpts struct {
	fleet      int
	acceptRate float64
	calibrate  string
	scenario   string
	somaxconn  int
	tcpBacklog int
	tls        bool
	period     time.Duration
}

// fleetFlagNames are the flags only --fleet mode takes; backoffOnly the
// ones it refuses.
var (
	fleetFlagNames = []string{"accept-rate", "calibrate", "scenario", "somaxconn", "tcp-backlog", "tls", "period"}
	backoffOnly    = []string{"attempts", "samples", "clients", "outage"}
)

func (o *fleetOpts) register(f *pflag.FlagSet) {
	f.IntVar(&o.fleet, "fleet", 0, "recommend settings for a fleet of this many connections to one server (simulated; see below)")
	f.Float64Var(&o.acceptRate, "accept-rate", 0, "--fleet: new connections/s the server's idle Valkey accepts (default: the model's ~16,000/s)")
	f.StringVar(&o.calibrate, "calibrate", "", "--fleet: fit the server model to this \"stormguard storm --json\" result instead")
	f.StringVar(&o.scenario, "scenario", "kill", "--fleet: what every connection loses at once: kill, restart, blip")
	f.IntVar(&o.somaxconn, "somaxconn", 4096, "--fleet: net.core.somaxconn on the server (the kernel's default since Linux 5.4)")
	f.IntVar(&o.tcpBacklog, "tcp-backlog", 511, "--fleet: Valkey's tcp-backlog")
	f.BoolVar(&o.tls, "tls", false, "--fleet: the connections use TLS")
	f.DurationVar(&o.period, "period", time.Second, "--fleet: how often each connection sends a command")
}

// check refuses flags of the other mode.
func (o *fleetOpts) check(cmd *cobra.Command) error {
	changed := func(names []string) string {
		for _, n := range names {
			if cmd.Flags().Changed(n) {
				return n
			}
		}
		return ""
	}
	if o.fleet == 0 && !cmd.Flags().Changed("fleet") {
		if n := changed(fleetFlagNames); n != "" {
			return fmt.Errorf("--%s needs --fleet", n)
		}
		return nil
	}
	switch {
	case o.fleet < 1 || o.fleet > simulate.MaxClients:
		return fmt.Errorf("--fleet must be within 1..%d, got %d", simulate.MaxClients, o.fleet)
	case changed(backoffOnly) != "":
		return fmt.Errorf("--%s previews one policy; it does not apply with --fleet", changed(backoffOnly))
	case !finiteNonNegative(o.acceptRate):
		return fmt.Errorf("--accept-rate must be a finite number ≥ 0, got %g", o.acceptRate)
	case o.acceptRate > 0 && o.calibrate != "":
		return errors.New("--accept-rate and --calibrate are mutually exclusive")
	case !slices.Contains(simulate.Scenarios, o.scenario):
		return fmt.Errorf("--scenario must be one of kill, restart, blip, got %q", o.scenario)
	case o.somaxconn < 1 || o.tcpBacklog < 1:
		return errors.New("--somaxconn and --tcp-backlog must be at least 1")
	case o.period <= 0:
		return fmt.Errorf("--period must be positive, got %s", o.period)
	}
	return nil
}

// fleetAdvice is the --json object of --fleet mode.
type fleetAdvice struct {
	Fleet    int    `json:"fleet"`
	Scenario string `json:"scenario"`
	// Recommended is the best setting: the fastest to recover among those
	// with the fewest overflows (see Advice.Class).
	Recommended simulate.Advice `json:"recommended"`
	// BestPolicy is the best setting without the stormguard dialer (a
	// client library's reconnect policy alone).
	BestPolicy *simulate.Advice `json:"best_policy,omitempty"`
	// Yours is the policy given with --strategy and its flags.
	Yours       *simulate.Advice  `json:"yours,omitempty"`
	Advice      []simulate.Advice `json:"advice"`
	Model       simulate.Model    `json:"model"`
	Calibration *simulate.Fit     `json:"calibration,omitempty"`

	acceptRateGiven bool
}

// runBackoffFleet simulates the candidate settings (and the user's policy
// when --strategy or a policy flag was given) for o.fleet and prints the
// recommendation.
func runBackoffFleet(ctx context.Context, cmd *cobra.Command, out, errOut io.Writer, o backoffOpts, p backoff.Policy) error {
	fo := o.fo
	m := simulate.DefaultModel()
	m.Somaxconn, m.TCPBacklog, m.TLS = fo.somaxconn, fo.tcpBacklog, fo.tls
	f := simulate.Fleet{Clients: fo.fleet, Scenario: fo.scenario, Period: fo.period, Seed: o.seed}
	if fo.acceptRate > 0 {
		var err error
		if m, err = withAcceptRate(m, fo.acceptRate); err != nil {
			return usageErr(err)
		}
	}
	var fit *simulate.Fit
	if fo.calibrate != "" {
		queueGiven := cmd.Flags().Changed("somaxconn") || cmd.Flags().Changed("tcp-backlog")
		got, err := calibrateFrom(ctx, errOut, fo.calibrate, m, f, queueGiven)
		if err != nil {
			return err
		}
		fit, m = &got, got.Model
	}
	cands := simulate.Candidates(m)
	yours := ""
	if userPolicyGiven(cmd) {
		if !slices.Contains(simulate.Strategies, o.strategy) {
			return usageErr(fmt.Errorf("--strategy %s is not modelled by the fleet simulation (want glide, full-jitter, equal-jitter or decorrelated)", o.strategy))
		}
		yours = "yours: " + o.strategy + " (" + describe(p) + ")"
		cands = append(cands, simulate.PolicyCandidate(yours, o.strategy, paramsOf(p)))
	}
	rows, err := simulate.Advise(ctx, m, f, cands, func(s string) { fmt.Fprintf(errOut, "backoff: simulating %s…\n", s) })
	if err != nil {
		if errors.Is(err, simulate.ErrConfig) {
			return usageErr(err)
		}
		return err
	}
	res := fleetAdvice{Fleet: fo.fleet, Scenario: fo.scenario, Recommended: rows[0], Advice: rows, Model: m, Calibration: fit,
		acceptRateGiven: fo.acceptRate > 0}
	for i := range rows {
		if !rows[i].Dialer && res.BestPolicy == nil && rows[i].Setting != yours {
			res.BestPolicy = &rows[i]
		}
		if yours != "" && rows[i].Setting == yours {
			res.Yours = &rows[i]
		}
	}
	if o.json {
		return json.NewEncoder(out).Encode(res)
	}
	writeFleetAdvice(out, res)
	return nil
}

// userPolicyGiven reports whether the command line chose a policy.
func userPolicyGiven(cmd *cobra.Command) bool {
	for _, n := range []string{"strategy", "retries", "factor", "exponent-base", "jitter-percent", "base", "cap"} {
		if cmd.Flags().Changed(n) {
			return true
		}
	}
	return false
}

// paramsOf is the backoff.Params that ByName turns into p.
func paramsOf(p backoff.Policy) backoff.Params {
	switch p := p.(type) {
	case backoff.GLIDE:
		return backoff.Params{GLIDE: p}
	case backoff.FullJitter:
		return backoff.Params{Base: p.Base, Cap: p.Cap}
	case backoff.EqualJitter:
		return backoff.Params{Base: p.Base, Cap: p.Cap}
	case backoff.DecorrelatedJitter:
		return backoff.Params{Base: p.Base, Cap: p.Cap}
	}
	return backoff.Params{}
}

func outcome(a simulate.Advice) string {
	if a.NotSimulated != "" {
		return "not simulated to the end: " + a.NotSimulated
	}
	ttr := "does not recover within 30 s"
	if a.TimeToRecoverMS != nil {
		ttr = fmt.Sprintf("recovers in %.1f s", float64(*a.TimeToRecoverMS)/1000)
	}
	return fmt.Sprintf("%s, %d listen overflows, peak %d connects/s, %d connects", ttr, a.ListenOverflows, a.PeakConnectsPerSec, a.ConnectAttempts)
}

func writeFleetAdvice(out io.Writer, r fleetAdvice) {
	m := r.Model
	src := "model defaults; give --accept-rate or --calibrate"
	if r.acceptRateGiven {
		src = "--accept-rate"
	}
	if r.Calibration != nil {
		src = fmt.Sprintf("calibrated, mean relative fit error %.2f", r.Calibration.Error)
	}
	fmt.Fprintf(out, "fleet of %d connections, %s; server: accept queue %d, accepts ~%.0f/s when idle (%s)\n\n",
		r.Fleet, r.Scenario, min(m.Somaxconn, m.TCPBacklog), m.AcceptRate(), src)
	best := r.Recommended
	verdict := "recovers fastest without a listen overflow"
	switch best.Class() {
	case 1:
		verdict = "no setting avoided overflows entirely; this one keeps them under 1% of the fleet and recovers fastest"
	case 2:
		verdict = "no setting kept overflows under 1% of the fleet; this one keeps them under 10% and recovers fastest"
	case 3:
		verdict = "no setting kept overflows under 10% of the fleet; this one keeps them under one per connection and recovers fastest"
	case 4, 5, 6:
		verdict = "no setting kept overflows under one per connection; this one recovers fastest"
	}
	fmt.Fprintf(out, "recommended (%s):\n  %s\n", verdict, best.Setting)
	if best.Dialer && best.AcceptRate > 0 {
		fmt.Fprintf(out, "  dialer.Options{AcceptRate: %.0f} with the fleet size known: FleetSize %d, or\n  d.ObserveClients(addr, connected_clients) from INFO clients while healthy\n", best.AcceptRate, r.Fleet)
	} else if best.Dialer && strings.Contains(best.Setting, "server-told") {
		fmt.Fprintf(out, "  the default dialer.Options with d.ObserveInfo(addr, reply) of INFO server clients cpu stats while healthy (one reading tells the server's load over its uptime; a later one, a second or more apart, its load now)\n")
	}
	fmt.Fprintf(out, "  simulated: %s\n", outcome(best))
	if r.BestPolicy != nil {
		fmt.Fprintf(out, "\nbest without the stormguard dialer (a client library's policy alone):\n  %s\n  simulated: %s\n", r.BestPolicy.Setting, outcome(*r.BestPolicy))
	}
	if r.Yours != nil {
		fmt.Fprintf(out, "\n%s\n  simulated: %s\n", r.Yours.Setting, outcome(*r.Yours))
	}
	fmt.Fprintf(out, "\nevery setting, best first (simulated, not measured):\n")
	writeAdvice(out, r.Advice)
}
