package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/stormguard/stormguard/internal/lab"
)

// Observation is what --calibrate reads from a `stormguard storm --json`
// result (one object, or the first of a --compare array): the keys the
// fit needs. Other keys are ignored.
type Observation struct {
	Strategy           string  `json:"strategy"`
	Clients            int     `json:"clients"`
	Scenario           string  `json:"scenario"`
	ConnectAttempts    int64   `json:"connect_attempts"`
	PeakConnectsPerSec int64   `json:"peak_connects_per_sec"`
	TimeToRecoverMS    *int64  `json:"time_to_recover_ms"`
	ListenOverflows    *uint64 `json:"listen_overflows"`
	Timeline           []int64 `json:"timeline_100ms"`
	// Points is the lab's per-bucket timeline around the disruption
	// (storm --json "timeline"): a kill's failed commands show how long
	// CLIENT KILL took, and the connects made meanwhile.
	Points []Point `json:"timeline"`
	// KilledClients is how many clients a kill closed (fewer than Clients
	// when some were reconnecting already).
	KilledClients *int64 `json:"killed_clients"`
	// Hosts is the number of client hosts (0: the clients ran on
	// Valkey's machine, one load generator sharing its cores).
	Hosts int `json:"hosts"`
	// ServerCPUPercent is Valkey's own CPU (INFO cpu) from the disruption
	// to the end of the run, DurationMS long: what the server's costs
	// add up to, which the fit must reproduce too (see errorOf).
	ServerCPUPercent *float64 `json:"server_cpu_percent"`
	DurationMS       int64    `json:"duration_ms"`
	// ServerCPUs is the CPU list valkey-server was pinned to
	// (--server-cpus; empty: not pinned): its cores were its own.
	ServerCPUs string `json:"server_cpus"`
	// Somaxconn and TCPBacklog are the lab server's accept-queue settings
	// (storm --spawn records them; nil in other results and older files).
	Somaxconn  *int `json:"somaxconn"`
	TCPBacklog *int `json:"tcp_backlog"`
}

// serverCPU is Valkey's CPU over the lab run's window, in ms (ok false
// when the result does not say).
func (o Observation) serverCPU() (float64, bool) {
	if o.ServerCPUPercent == nil || o.DurationMS <= 0 || !(*o.ServerCPUPercent > 0 && *o.ServerCPUPercent <= 100*1024) {
		return 0, false
	}
	return *o.ServerCPUPercent / 100 * float64(o.DurationMS), true
}

// bucketPhase is how long before the disruption o's 100 ms buckets
// start (Fleet.BucketPhase, within (0, 100 ms]), read off its timeline's
// first point; 0 (a seeded draw) without one. The lab's buckets start
// with its recorder, and where the disruption falls among them is not
// uniform: an immediate or full-jitter kill of the lab curve came 3–50
// ms after a bucket's start in all of session 9's runs (the warm-up ends
// with the ramp, a whole number of buckets after the recorder's start,
// then the hold and the baseline reads take a few ms), so the model
// counts its connects on the run's own grid.
func (o Observation) bucketPhase() time.Duration {
	if len(o.Points) == 0 {
		return 0
	}
	ms := ((-o.Points[0].TMS)%100 + 100) % 100
	if ms == 0 {
		ms = 100
	}
	return time.Duration(ms) * time.Millisecond
}

// Point is one 100 ms bucket of a lab run's "timeline" (the keys used).
type Point struct {
	TMS            int64 `json:"t_ms"`
	Connects       int64 `json:"connects"`
	FailedCommands int64 `json:"failed_commands"`
	OKCommands     int64 `json:"ok_commands"`
}

// killSpan reads a kill's duration off o's timeline: the time after the
// disruption by which 99% of the killed clients had seen their
// connection closed (each close is one failed command, interpolated
// within its bucket), how many connects the clients made by then, and
// the kill's burstiness: its busiest bucket's closes over its mean per
// bucket. ok is false without a usable timeline.
func killSpan(o Observation) (span time.Duration, dials, burst float64, ok bool) {
	if o.Scenario != "kill" || len(o.Points) == 0 {
		return 0, 0, 0, false
	}
	killed := float64(o.Clients)
	if o.KilledClients != nil && *o.KilledClients > 0 {
		killed = float64(*o.KilledClients)
	}
	need := 0.99 * killed
	var cum, peak float64
	for _, p := range o.Points {
		if p.TMS < -300 { // the kill's closes start when it is sent
			continue
		}
		f := float64(p.FailedCommands)
		peak = max(peak, f)
		if cum+f >= need {
			frac := (need - cum) / f
			ms := max(float64(p.TMS)+100*frac, 1)
			mean := need / max(ms/100, 1)
			return time.Duration(ms * float64(time.Millisecond)), dials + frac*float64(p.Connects), peak / mean, true
		}
		cum += f
		dials += float64(p.Connects)
	}
	return 0, 0, 0, false
}

// fitKill fits the client side's NoticeCost and DialCost to the kills'
// spreads as the clients saw them: span = clients·NoticeCost +
// connects·DialCost (the generator does one after another; the
// connects it finishes and the answers it reads wait behind the closes
// a kill faster than it has queued, so they fall after the spread — the
// lab's clients record almost no answer until they have noticed every
// close), least
// squares relative to each span, both costs non-negative. ok is false
// when no observation has a kill timeline (the defaults stay).
func fitKill(obs []Observation) (notice, dial time.Duration, ok bool) {
	var a11, a12, a22, b1, b2 float64
	n := 0
	for _, o := range obs {
		span, d, _, good := killSpan(o)
		if !good {
			continue
		}
		w := 1 / (span.Seconds() * span.Seconds())
		c := float64(o.Clients)
		a11 += w * c * c
		a12 += w * c * d
		a22 += w * d * d
		b1 += w * c * span.Seconds()
		b2 += w * d * span.Seconds()
		n++
	}
	if n == 0 {
		return 0, 0, false
	}
	k, st := 0.0, 0.0
	if det := a11*a22 - a12*a12; n > 1 && det > 1e-9*a11*a22 {
		k, st = (b1*a22-b2*a12)/det, (a11*b2-a12*b1)/det
	}
	if k <= 0 || st < 0 { // one term alone: per client only
		k, st = b1/a11, 0
	}
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	return max(sec(k), time.Microsecond), sec(st), true
}

// fitAnswer bounds the client side's cost of finishing a connect (writing
// the first PING) and of reading its answer from the lab's timelines: once
// a kill's closes are noticed, the lab's clients read the answers of the
// connections made meanwhile in a burst (10,494 in one 100 ms bucket at
// 15,000 clients, 4,242 at 6,000, 1,995 at 2,000, with Valkey pinned to its
// own core), far faster than they noticed closes and dialled (40 µs per
// client): each of those answers cost at most a bucket over twice the
// burst (a PING written, an answer read). The tightest bound over the
// kills is the cost; ok is false without a kill timeline. Before this the
// model charged a notice's cost for each, which spread the answers over
// as long as the closes and sent the PINGs that complete a handshake
// whose final ACK the full accept queue dropped one by one, slower than
// Valkey frees a slot: none was dropped again, where the lab's come back
// in waves 200 ms, 400 ms and 800 ms apart (the PING's retransmits).
func fitAnswer(obs []Observation) (time.Duration, bool) {
	best := time.Duration(0)
	for _, o := range obs {
		if o.Scenario != "kill" {
			continue
		}
		var peak int64
		for _, p := range o.Points {
			if p.TMS >= -lab.Bucket.Milliseconds() {
				peak = max(peak, p.OKCommands)
			}
		}
		if peak <= 0 {
			continue
		}
		if b := lab.Bucket / time.Duration(2*peak); best == 0 || b < best {
			best = b
		}
	}
	return best, best > 0
}

// ParseObservations reads storm --json output: one object or a non-empty
// array of them (storm --compare). Every result must be usable for a fit:
// a modelled strategy and scenario, a fleet within 1..MaxClients, a
// recovery, and counts that are not negative.
func ParseObservations(b []byte) ([]Observation, error) {
	var arr []Observation
	switch t := bytes.TrimSpace(b); {
	case len(t) > 0 && t[0] == '[':
		if err := json.Unmarshal(t, &arr); err != nil {
			return nil, fmt.Errorf("%w: not a storm --json result (array): %v", ErrConfig, err)
		}
	default:
		var one *Observation
		if err := json.Unmarshal(t, &one); err != nil {
			return nil, fmt.Errorf("%w: not a storm --json result: %v", ErrConfig, err)
		}
		if one != nil {
			arr = []Observation{*one}
		}
	}
	if len(arr) == 0 {
		return nil, fmt.Errorf("%w: no storm result in it (want one storm --json object or a --compare array)", ErrConfig)
	}
	for i, o := range arr {
		if err := o.validate(); err != nil {
			return nil, fmt.Errorf("%w: result %d: %v", ErrConfig, i, err)
		}
	}
	return arr, nil
}

// validate reports the first thing that makes o unusable for a fit.
func (o Observation) validate() error {
	switch {
	case o.Clients < 1 || o.Clients > MaxClients:
		return fmt.Errorf("clients %d out of range 1..%d", o.Clients, MaxClients)
	case !slices.Contains(Strategies, o.Strategy):
		return fmt.Errorf("strategy %q is not modelled (want one of %v)", o.Strategy, Strategies)
	case !slices.Contains(Scenarios, o.Scenario):
		return fmt.Errorf("scenario %q is not modelled (want one of %v)", o.Scenario, Scenarios)
	case o.TimeToRecoverMS == nil || *o.TimeToRecoverMS <= 0:
		return errors.New("no time_to_recover_ms (the run did not recover): nothing to fit")
	case o.ListenOverflows == nil:
		return errors.New("no listen_overflows")
	case o.PeakConnectsPerSec <= 0:
		return errors.New("no peak_connects_per_sec")
	case o.ConnectAttempts < 0 || o.Hosts < 0 || (o.KilledClients != nil && *o.KilledClients < 0):
		return errors.New("connect_attempts, hosts and killed_clients must not be negative")
	}
	// A negative count in the timeline would make the kill's spread
	// (killSpan) meaningless: reject it rather than fit to it.
	for _, n := range o.Timeline {
		if n < 0 {
			return errors.New("timeline_100ms has a negative count")
		}
	}
	for _, p := range o.Points {
		if p.Connects < 0 || p.FailedCommands < 0 {
			return fmt.Errorf("timeline at t_ms %d has a negative count", p.TMS)
		}
	}
	return nil
}

// Fit is the outcome of a calibration.
type Fit struct {
	Model Model `json:"model"`
	// Error is the fit's mean relative error over the observations on
	// peak connect rate, overflows and time to recover.
	Error float64 `json:"error"`
	Runs  int     `json:"runs"`
}

// Calibrate fits the client side's CPU (NoticeCost, DialCost,
// ClientBurst) and the server's costs (ConnCost, CmdCost) to the
// observations, starting from base (which holds the kernel and Valkey
// settings of the lab run). The client side's costs come from how a
// kill's closes spread over the lab's timeline (fitKill); the server's
// from a coarse-to-fine grid search that minimises the relative error on
// peak connect rate, overflows and time to recover, with, after its first
// round, KillCost (fitKillCost) and the host (fitHost). f holds the fleet
// settings other than Clients, Strategy and Scenario.
func Calibrate(ctx context.Context, base Model, f Fleet, obs []Observation) (Fit, error) {
	if len(obs) == 0 {
		return Fit{}, fmt.Errorf("%w: nothing to calibrate on", ErrConfig)
	}
	m := base.withDefaults()
	// The client side's dial rate is not fitted: the lab's peaks grew
	// with the fleet (an immediate fleet's busiest 100 ms: 7,230/s at
	// 2,000 clients, 12,160/s at 4,000), set by how fast the kill
	// reached the clients, so a calibration size's peak is no ceiling.
	if k, st, ok := fitKill(obs); ok {
		// The generator runs 1/ClientBurst of the time: its costs while
		// running are the spread's per job over ClientBurst.
		m.ClientBurst = killBurst(obs)
		b := max(m.ClientBurst, 1)
		m.NoticeCost, m.DialCost = time.Duration(float64(k)/b), time.Duration(float64(st)/b)
		if a, ok := fitAnswer(obs); ok && m.AnswerCost == 0 {
			m.AnswerCost = time.Duration(float64(a) / b)
		}
	}
	runs := 0
	f = f.withDefaults()
	score := func(m Model) (float64, error) {
		var sum float64
		for _, o := range obs {
			ff := f
			ff.Clients, ff.Strategy, ff.Scenario = o.Clients, o.Strategy, o.Scenario
			ff.BucketPhase = o.bucketPhase()
			// Several seeds per observation: where the storm falls on the
			// timer wheel's ticks (seeded) moves a small fleet's figures
			// by a retransmit wave; a fit to one seed's draw would fit
			// that draw. The buckets are the run's own (bucketPhase).
			for i := range uint64(calibrateSeeds) {
				ff.Seed = f.Seed + i
				r, err := Run(ctx, m, ff)
				if err != nil {
					return 0, err
				}
				runs++
				sum += errorOf(o, r)
			}
		}
		return sum / float64(len(obs)*calibrateSeeds), nil
	}
	best, err := score(m)
	if err != nil {
		return Fit{}, err
	}
	// Coarse to fine over log-spaced costs (a measured one is kept:
	// CmdCostMeasured, ConnCostMeasured); after the coarse round, the
	// share of Valkey's CPU a load generator takes (when there is one).
	conn, cmd := m.ConnCost, max(m.CmdCost, 100*time.Nanosecond)
	for round, span := range []float64{8, 2.5, 1.3} {
		if round == 1 {
			m.ConnCost, m.CmdCost = conn, cmd
			var err error
			if m, best, err = fitKillCost(m, obs, best, score); err != nil {
				return Fit{}, err
			}
			// Valkey pinned to CPUs of its own (--server-cpus): no host
			// to share, nothing to fit there.
			if !slices.ContainsFunc(obs, func(o Observation) bool { return o.ServerCPUs != "" }) {
				if m, best, err = fitHost(m, best, score); err != nil {
					return Fit{}, err
				}
			}
			if m, best, err = fitCycleCost(m, obs, best, score); err != nil {
				return Fit{}, err
			}
		}
		bc, bm := conn, cmd
		cmdSteps, connSteps := logSteps(span, 5), logSteps(span, 7)
		if m.CmdCostMeasured {
			cmdSteps = []float64{1} // measured: kept
		}
		if m.ConnCostMeasured {
			connSteps = []float64{1} // measured: kept
		}
		for _, fc := range connSteps {
			for _, fm := range cmdSteps {
				t := m
				t.ConnCost = time.Duration(float64(conn) * fc)
				t.CmdCost = time.Duration(float64(cmd) * fm)
				if t.ConnCost <= 0 {
					continue
				}
				s, err := score(t)
				if err != nil {
					return Fit{}, err
				}
				if s < best {
					best, bc, bm = s, t.ConnCost, t.CmdCost
				}
			}
		}
		conn, cmd = bc, bm
	}
	m.ConnCost, m.CmdCost = conn, cmd
	return Fit{Model: m, Error: best, Runs: runs}, nil
}

// calibrateSeeds is how many seeds the fit scores every observation
// with (the check's model figure is the median of 5).
const calibrateSeeds = 3

// killCostSteps are fitKillCost's factors on the given KillCost.
var killCostSteps = []float64{0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.2}

// fitKillCost fits Valkey's time per client freed by CLIENT KILL within
// 0.5–1.2× the given one, when an observation is a kill. It is measured
// (Valkey's INFO commandstats: 7–16 µs per client on the lab's VM at
// load 2–4), and the host model stretches it by Valkey's share of the
// cores (host.go), but what else ran on the machine varies from run to
// run, and the dialer's overflows (its dials during the kill find no
// accept loop) depend on it. It returns the better model and its score.
func fitKillCost(m Model, obs []Observation, best float64, score func(Model) (float64, error)) (Model, float64, error) {
	if !slices.ContainsFunc(obs, func(o Observation) bool { return o.Scenario == "kill" }) {
		return m, best, nil
	}
	return tryScaled(m, best, killCostSteps, score, func(t *Model, base Model, f float64) bool {
		t.KillCost = time.Duration(f * float64(base.KillCost))
		return f != 1 && t.KillCost > 0
	})
}

// tryScaled scores the model with one of its costs scaled by each of
// steps in turn (set scales it on the copy t of base and says whether
// the step is worth a score) and returns the best-scoring model.
func tryScaled(m Model, best float64, steps []float64, score func(Model) (float64, error), set func(t *Model, base Model, f float64) bool) (Model, float64, error) {
	base := m
	for _, f := range steps {
		t := base
		if !set(&t, base, f) {
			continue
		}
		s, err := score(t)
		if err != nil {
			return m, best, err
		}
		if s < best {
			best, m = s, t
		}
	}
	return m, best, nil
}

// cycleCostSteps are fitCycleCost's factors on the given CycleCost.
var cycleCostSteps = []float64{0.1, 0.25, 0.5}

// fitCycleCost fits an accepting loop turn's fixed cost (CycleCost) below
// the given one, when an observation has Valkey's own CPU (INFO cpu):
// how the server's CPU per client differs between a fleet that arrives
// in bursts (every turn accepts its cap) and one the dialer paces (a
// turn per connection) is the turn's share. The lab's differ by the
// dialer instances' INFO reads alone (36–38 µs per client for immediate
// and full-jitter, 40–55 µs for the dialer, Valkey pinned, 2,000–15,000
// clients), where the default 20 µs per turn made the model's paced
// fleet cost twice its bursty one. It returns the better model and its
// score.
func fitCycleCost(m Model, obs []Observation, best float64, score func(Model) (float64, error)) (Model, float64, error) {
	if !slices.ContainsFunc(obs, func(o Observation) bool { _, ok := o.serverCPU(); return ok }) {
		return m, best, nil
	}
	return tryScaled(m, best, cycleCostSteps, score, func(t *Model, base Model, f float64) bool {
		t.CycleCost = max(time.Duration(f*float64(base.CycleCost)), time.Nanosecond)
		return true
	})
}

// clientCPUSteps and hostLoadSteps are fitHost's grid: the client
// side's CPU per connected client per Period (a Go client's PING round
// trip and runtime work: tens of µs, up to 0.4 ms on a busy machine) and
// other runnable threads on the host (a load average's worth).
var (
	clientCPUSteps = []time.Duration{0, 25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
		200 * time.Microsecond, 400 * time.Microsecond}
	hostLoadSteps = []float64{0, 0.5, 1, 2, 3}
)

// fitHost fits how much CPU the host leaves Valkey: with HostCores set
// (Valkey shares its machine with the load generator), ClientCPU and
// HostLoad on a grid; otherwise, when there is a load generator,
// ClientShare. It returns the better model and its score.
func fitHost(m Model, best float64, score func(Model) (float64, error)) (Model, float64, error) {
	try := func(t Model) error {
		s, err := score(t)
		if err == nil && s < best {
			best, m = s, t
		}
		return err
	}
	base := m
	if base.HostCores > 0 {
		for _, cpu := range clientCPUSteps {
			for _, load := range hostLoadSteps {
				t := base
				t.ClientCPU, t.HostLoad = cpu, load
				if err := try(t); err != nil {
					return m, best, err
				}
			}
		}
		return m, best, nil
	}
	if base.NoticeCost == 0 && base.DialCost == 0 {
		return m, best, nil
	}
	for _, share := range []float64{0, 0.2, 0.4, 0.6, 0.8} {
		t := base
		t.ClientShare = share
		if err := try(t); err != nil {
			return m, best, err
		}
	}
	return m, best, nil
}

// killBurst is the median burstiness of the observed kills (1 at
// least, 5 at most).
func killBurst(obs []Observation) float64 {
	var bs []float64
	for _, o := range obs {
		if _, _, b, ok := killSpan(o); ok {
			bs = append(bs, min(max(b, 1), 5))
		}
	}
	if len(bs) == 0 {
		return 1
	}
	slices.Sort(bs)
	return bs[len(bs)/2]
}

// logSteps returns n factors from 1/span to span, log-spaced.
func logSteps(span float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = math.Pow(span, -1+2*float64(i)/float64(n-1))
	}
	return out
}

// errorOf is the mean relative error of r against o on the three
// quantities the comparison is about. Overflows get +50 on both sides so
// that 0 against 3 is not an infinite error.
//
// When the lab result has Valkey's own CPU over its window (INFO cpu,
// server_cpu_percent), the model's server CPU over the same window is a
// fourth term: the figures alone let the fit trade the server's cost per
// connection against the client side's pace (with the client side's
// answers cheap, as measured, the fit at 6,000 clients chose 2.3 µs per
// accepted connection, Valkey's CPU per reconnecting client 21 µs against
// the lab's measured 36–39 µs), and the measured CPU pins what the
// server's work adds up to.
func errorOf(o Observation, r *Result) float64 {
	rel := func(sim, obs float64) float64 { return math.Abs(sim-obs) / math.Max(obs, 1) }
	e := rel(float64(r.PeakConnectsPerSec), float64(o.PeakConnectsPerSec))
	e += rel(float64(r.ListenOverflows)+50, float64(*o.ListenOverflows)+50)
	if r.TimeToRecoverMS == nil {
		e += 1
	} else {
		e += rel(float64(*r.TimeToRecoverMS), float64(*o.TimeToRecoverMS))
	}
	if cpu, ok := o.serverCPU(); ok {
		window := time.Duration(o.DurationMS) * time.Millisecond
		return (e + rel(r.serverCPUAt(window), cpu)) / 4
	}
	return e / 3
}

// Compare returns the relative differences of r from o: peak connect
// rate, overflows and time to recover (sim−lab)/lab; a missing time is
// +Inf.
func Compare(o Observation, r *Result) (peak, overflows, recover float64) {
	peak = (float64(r.PeakConnectsPerSec) - float64(o.PeakConnectsPerSec)) / math.Max(float64(o.PeakConnectsPerSec), 1)
	overflows = (float64(r.ListenOverflows) - float64(*o.ListenOverflows)) / math.Max(float64(*o.ListenOverflows), 1)
	recover = math.Inf(1)
	if r.TimeToRecoverMS != nil {
		recover = (float64(*r.TimeToRecoverMS) - float64(*o.TimeToRecoverMS)) / float64(*o.TimeToRecoverMS)
	}
	return
}
