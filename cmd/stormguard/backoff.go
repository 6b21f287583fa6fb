package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/backoff"
)

// Limits that keep a preview within memory and a few seconds of CPU.
const (
	maxBackoffAttempts = 1000
	maxBackoffSamples  = 1_000_000
	maxBackoffCells    = 5_000_000 // attempts × samples held for percentiles
	maxFleetClients    = 1_000_000
	maxFleetEvents     = 50_000_000
	fleetBucket        = 100 * time.Millisecond
)

type backoffOpts struct {
	strategy      string
	retries       int
	factor        int
	exponentBase  int
	jitterPercent int
	base, cap     time.Duration
	attempts      int
	samples       int
	seed          uint64
	json          bool
	clients       int
	outage        time.Duration
	fo            fleetOpts
}

// strategyFlags lists which policy flags a strategy takes; false for an
// unknown strategy.
func strategyFlags(strategy string) ([]string, bool) {
	switch strategy {
	case "glide":
		return []string{"retries", "factor", "exponent-base", "jitter-percent"}, true
	case "full-jitter", "equal-jitter", "decorrelated", "grpc":
		return []string{"base", "cap"}, true
	}
	return nil, false
}

func newBackoffCmd() *cobra.Command {
	var o backoffOpts
	cmd := &cobra.Command{
		Use:   "backoff --strategy S [policy flags] [--attempts N] [--samples K] [--json] | backoff --fleet N [--accept-rate R | --calibrate FILE]",
		Short: "Preview a reconnect policy: per-attempt delays and the fleet-wide arrival curve",
		Long: `Preview a reconnect policy. For each attempt n (the delay after the n-th
consecutive failed connect; the first reconnect after a disconnect is
immediate under every strategy) it draws --samples schedules with a seeded
source and prints the minimum, mean, median, 99th percentile and maximum
delay in milliseconds.

Strategies and their flags:
  glide         valkey-glide's code semantics: factor·base^n ms ×U(1−j,1+j)
                for n=1..retries, then factor·base^retries unjittered forever
                (--retries 5 --factor 100 --exponent-base 2 --jitter-percent 20)
  full-jitter   U(0, min(cap, base·2^(n−1)))            (--base 100ms --cap 10s)
  equal-jitter  e/2 + U(0, e/2), e = min(cap, base·2^(n−1))
  decorrelated  min(cap, U(base, 3·previous))
  grpc          gRPC connection backoff: 1s, ×1.6, ±20%, 120s max
                (--base is the initial backoff, --cap the maximum)

With --clients N it also simulates the fleet: N clients lose their
connection at the same instant (t=0); every connect attempt that starts
before --outage fails at once, the first one at or after it succeeds. It
prints how many attempts arrive in each 100ms bucket, which is the load the
server sees while it comes back.

--json prints one JSON object per line: first one per attempt with keys
attempt, min_ms, mean_ms, p50_ms, p99_ms, max_ms; then, with --clients, one
per 100ms bucket with keys bucket_start_ms, attempts (every bucket from 0 to
the last attempt, empty ones included). Tell them apart by the "attempt" key.

Which settings for my fleet? --fleet N answers "for a fleet of N connections
to this server, which reconnect settings recover fastest without overflowing
the server's accept queue?". It runs the fleet simulation of "stormguard
simulate" (every connection lost at once, the kernel's SYN and accept queues,
Valkey's accept loop) for the libraries' defaults, two full-jitter settings
and the stormguard dialer at several accept rates, and prints the
recommended setting with its simulated outcome, the best setting without the
dialer, and every candidate ranked: recovered without a listen overflow
first, then overflows under 1% of the fleet, under 10%, under one per
connection, then the rest; fastest first.
Describe the server with --somaxconn and --tcp-backlog (the accept queue is
the smaller), --tls, and how fast it accepts: --accept-rate R (an idle
Valkey's new connections per second; a busy or small host accepts fewer)
or, better, --calibrate FILE with a "stormguard storm --json" result
measured against it (a --spawn result's own somaxconn and tcp-backlog are
used unless you give --somaxconn or --tcp-backlog). --strategy and policy flags add your own policy to the
comparison ("yours"). --json prints one object: fleet, scenario,
recommended, best_policy, yours, advice (every candidate with the storm
keys), model, calibration. Simulated figures are a model's, not
measurements: docs/backoff.md says how far they agreed with the lab.`,
		Example: `  stormguard backoff --strategy glide --attempts 8
  stormguard backoff --strategy glide --retries 5 --factor 1000 --exponent-base 2 --jitter-percent 20 --json
  stormguard backoff --strategy full-jitter --base 100ms --cap 10s --attempts 10 --samples 50000
  stormguard backoff --strategy decorrelated --base 50ms --cap 5s --clients 10000 --outage 5s
  stormguard backoff --strategy grpc --attempts 12 --seed 7 --json
  stormguard backoff --fleet 20000 --accept-rate 8000
  stormguard backoff --fleet 50000 --calibrate lab.json --strategy glide --factor 1000 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.fo.check(cmd); err != nil {
				return usageErr(err)
			}
			p, err := o.policy(cmd)
			if err != nil {
				return usageErr(err)
			}
			if o.fo.fleet > 0 {
				return runBackoffFleet(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr(), o, p)
			}
			return runBackoff(cmd.OutOrStdout(), p, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.strategy, "strategy", "glide", "glide, full-jitter, equal-jitter, decorrelated or grpc")
	f.IntVar(&o.retries, "retries", backoff.GLIDEDefaultRetries, "glide: jittered growing steps before the constant tail")
	f.IntVar(&o.factor, "factor", backoff.GLIDEDefaultFactor, "glide: milliseconds multiplied by base^n (0 = 100)")
	f.IntVar(&o.exponentBase, "exponent-base", backoff.GLIDEDefaultExponentBase, "glide: growth base (0 = 2)")
	f.IntVar(&o.jitterPercent, "jitter-percent", backoff.GLIDEDefaultJitterPercent, "glide: ± jitter of the growing steps, 0..100")
	f.DurationVar(&o.base, "base", 0, "jitter strategies: base delay (default 100ms; grpc: initial backoff, 1s)")
	f.DurationVar(&o.cap, "cap", 0, "jitter strategies: largest delay (default 10s; grpc: max backoff, 120s)")
	f.IntVar(&o.attempts, "attempts", 10, "number of attempts (failures) to show")
	f.IntVar(&o.samples, "samples", 10000, "schedules drawn per attempt")
	f.Uint64Var(&o.seed, "seed", 1, "seed of the random source (same seed, same output)")
	f.BoolVar(&o.json, "json", false, "print one JSON object per line")
	f.IntVar(&o.clients, "clients", 0, "simulate this many clients disconnecting at once")
	f.DurationVar(&o.outage, "outage", 5*time.Second, "with --clients: how long every connect attempt fails")
	o.fo.register(f)
	return cmd
}

// policy validates the flags and builds the policy.
func (o backoffOpts) policy(cmd *cobra.Command) (backoff.Policy, error) {
	allowed, ok := strategyFlags(o.strategy)
	if !ok {
		return nil, fmt.Errorf("unknown --strategy %q (want glide, full-jitter, equal-jitter, decorrelated or grpc)", o.strategy)
	}
	for _, name := range []string{"retries", "factor", "exponent-base", "jitter-percent", "base", "cap"} {
		if cmd.Flags().Changed(name) && !slices.Contains(allowed, name) {
			return nil, fmt.Errorf("--%s does not apply to --strategy %s (it takes %s)", name, o.strategy, "--"+strings.Join(allowed, ", --"))
		}
	}
	switch {
	case o.attempts < 1 || o.attempts > maxBackoffAttempts:
		return nil, fmt.Errorf("--attempts must be within 1..%d, got %d", maxBackoffAttempts, o.attempts)
	case o.samples < 1 || o.samples > maxBackoffSamples:
		return nil, fmt.Errorf("--samples must be within 1..%d, got %d", maxBackoffSamples, o.samples)
	case o.attempts*o.samples > maxBackoffCells:
		return nil, fmt.Errorf("--attempts × --samples must be at most %d, got %d", maxBackoffCells, o.attempts*o.samples)
	case o.clients < 0 || o.clients > maxFleetClients:
		return nil, fmt.Errorf("--clients must be within 0..%d, got %d", maxFleetClients, o.clients)
	case o.outage < 0:
		return nil, fmt.Errorf("--outage must not be negative, got %s", o.outage)
	case cmd.Flags().Changed("outage") && o.clients == 0:
		return nil, errors.New("--outage needs --clients")
	// Named here: the package's message shows the unset one of the two
	// as 0s, though its default applies.
	case o.base < 0:
		return nil, fmt.Errorf("--base must not be negative, got %s", o.base)
	case o.cap < 0:
		return nil, fmt.Errorf("--cap must not be negative, got %s", o.cap)
	}
	if o.strategy == "glide" {
		switch {
		case o.jitterPercent > backoff.GLIDEMaxJitterPercent:
			return nil, fmt.Errorf("--jitter-percent %d exceeds %d (it would make delays negative)", o.jitterPercent, backoff.GLIDEMaxJitterPercent)
		case o.jitterPercent < 0 || o.retries < 0 || o.factor < 0 || o.exponentBase < 0:
			return nil, errors.New("--retries, --factor, --exponent-base and --jitter-percent must not be negative")
		case o.retries == 0:
			return nil, errors.New("--retries must be at least 1 (released GLIDE underflows on 0)")
		}
	}
	p, err := backoff.ByName(o.strategy, backoff.Params{
		GLIDE: backoff.GLIDE{Retries: o.retries, Factor: o.factor, ExponentBase: o.exponentBase, JitterPercent: o.jitterPercent},
		Base:  o.base, Cap: o.cap,
	})
	if err != nil {
		// Drop the package prefix: the flag names say what was wrong.
		return nil, errors.New(strings.TrimPrefix(err.Error(), backoff.ErrInvalidConfig.Error()+": "))
	}
	return p, nil
}

// attemptStats is one attempt's line.
type attemptStats struct {
	Attempt int     `json:"attempt"`
	MinMS   float64 `json:"min_ms"`
	MeanMS  float64 `json:"mean_ms"`
	P50MS   float64 `json:"p50_ms"`
	P99MS   float64 `json:"p99_ms"`
	MaxMS   float64 `json:"max_ms"`
}

// bucketCount is one arrival-curve line.
type bucketCount struct {
	StartMS  int64 `json:"bucket_start_ms"`
	Attempts int   `json:"attempts"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }

// delayStats draws o.samples schedules of o.attempts failures each.
func delayStats(p backoff.Policy, o backoffOpts) []attemptStats {
	r := rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15))
	cols := make([][]time.Duration, o.attempts)
	for i := range cols {
		cols[i] = make([]time.Duration, o.samples)
	}
	for s := 0; s < o.samples; s++ {
		sch, _ := backoff.NewSchedule(p, r) // p was validated
		for n := 0; n < o.attempts; n++ {
			cols[n][s] = sch.Failure()
		}
	}
	out := make([]attemptStats, o.attempts)
	for n, col := range cols {
		slices.Sort(col)
		var sum float64
		for _, d := range col {
			sum += float64(d)
		}
		q := func(f float64) time.Duration { return col[min(len(col)-1, int(f*float64(len(col))))] }
		out[n] = attemptStats{Attempt: n + 1, MinMS: ms(col[0]), MeanMS: ms(time.Duration(sum / float64(len(col)))),
			P50MS: ms(q(0.5)), P99MS: ms(q(0.99)), MaxMS: ms(col[len(col)-1])}
	}
	return out
}

// fleet simulates o.clients clients disconnected at t=0 (see the command
// help for the model) and returns attempts per 100ms bucket.
func fleet(p backoff.Policy, o backoffOpts) ([]int, error) {
	r := rand.New(rand.NewPCG(o.seed^0x5851f42d4c957f2d, o.seed))
	var buckets []int
	events := 0
	for c := 0; c < o.clients; c++ {
		sch, _ := backoff.NewSchedule(p, r)
		var t time.Duration // first reconnect: immediate
		for {
			b := int(t / fleetBucket)
			for len(buckets) <= b {
				buckets = append(buckets, 0)
			}
			buckets[b]++
			if events++; events > maxFleetEvents {
				return nil, fmt.Errorf("fleet simulation exceeds %d connect attempts; use fewer --clients or a shorter --outage", maxFleetEvents)
			}
			if t >= o.outage {
				break
			}
			t += sch.Failure()
		}
	}
	return buckets, nil
}

func runBackoff(out io.Writer, p backoff.Policy, o backoffOpts) error {
	st := delayStats(p, o)
	var buckets []int
	if o.clients > 0 {
		var err error
		if buckets, err = fleet(p, o); err != nil {
			return usageErr(err)
		}
	}
	if o.json {
		enc := json.NewEncoder(out)
		for _, s := range st {
			if err := enc.Encode(s); err != nil {
				return err
			}
		}
		for i, n := range buckets {
			if err := enc.Encode(bucketCount{StartMS: int64(i) * fleetBucket.Milliseconds(), Attempts: n}); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(out, "strategy %s: %s; first reconnect immediate; %d samples, seed %d\n\n", o.strategy, describe(p), o.samples, o.seed)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ATTEMPT\tMIN_MS\tMEAN_MS\tP50_MS\tP99_MS\tMAX_MS\t")
	for _, s := range st {
		fmt.Fprintf(tw, "%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", s.Attempt, s.MinMS, s.MeanMS, s.P50MS, s.P99MS, s.MaxMS)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if buckets != nil {
		writeArrivals(out, buckets, o)
	}
	return nil
}

func describe(p backoff.Policy) string {
	switch p := p.(type) {
	case backoff.GLIDE:
		return fmt.Sprintf("retries %d, factor %d ms, exponent base %d, jitter ±%d%%", p.Retries, p.Factor, p.ExponentBase, p.JitterPercent)
	case backoff.FullJitter:
		return fmt.Sprintf("base %s, cap %s", orDur(p.Base, backoff.DefaultJitterBase), orDur(p.Cap, backoff.DefaultJitterCap))
	case backoff.EqualJitter:
		return fmt.Sprintf("base %s, cap %s", orDur(p.Base, backoff.DefaultJitterBase), orDur(p.Cap, backoff.DefaultJitterCap))
	case backoff.DecorrelatedJitter:
		return fmt.Sprintf("base %s, cap %s", orDur(p.Base, backoff.DefaultJitterBase), orDur(p.Cap, backoff.DefaultJitterCap))
	case backoff.GRPC:
		return fmt.Sprintf("initial %s, ×%g, ±%g%%, max %s", orDur(p.Initial, backoff.GRPCInitialBackoff),
			p.Multiplier, p.Jitter*100, orDur(p.Max, backoff.GRPCMaxBackoff))
	}
	return ""
}

func orDur(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// writeArrivals prints the arrival curve; runs of empty buckets are folded.
func writeArrivals(out io.Writer, buckets []int, o backoffOpts) {
	peak, peakAt, later, laterAt, total := 0, 0, 0, 0, 0
	for i, n := range buckets {
		total += n
		if n > peak {
			peak, peakAt = n, i
		}
		// Bucket 0 holds the immediate first reconnect of every
		// strategy; the policy shows in the buckets after it.
		if i > 0 && n > later {
			later, laterAt = n, i
		}
	}
	fmt.Fprintf(out, "\nfleet: %d clients disconnected at t=0, every attempt fails until %s\n", o.clients, o.outage)
	fmt.Fprintf(out, "%d connect attempts; peak %d in one 100ms bucket (at %dms, %d/s); last attempt in the bucket at %dms\n",
		total, peak, int64(peakAt)*fleetBucket.Milliseconds(), peak*int(time.Second/fleetBucket), int64(len(buckets)-1)*fleetBucket.Milliseconds())
	fmt.Fprintf(out, "after the first bucket: peak %d at %dms\n\n", later, int64(laterAt)*fleetBucket.Milliseconds())
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BUCKET_MS\tATTEMPTS\t")
	empty := 0
	flush := func() {
		if empty > 0 {
			fmt.Fprintf(tw, "…\t(%d empty buckets)\t\n", empty)
			empty = 0
		}
	}
	for i, n := range buckets {
		if n == 0 {
			empty++
			continue
		}
		flush()
		bar := strings.Repeat("#", max(1, n*50/peak))
		fmt.Fprintf(tw, "%d\t%d\t%s\n", int64(i)*fleetBucket.Milliseconds(), n, bar)
	}
	flush()
	tw.Flush()
}
