package sample

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Source fills its part of a Sample for one target. Implementations write
// only their own fields and return an error (ideally one that unwraps to
// signal.ErrUnavailable) when their part cannot be read.
type Source interface {
	// Name is the key used in Sample.Errors, e.g. "listenq" or "valkey".
	Name() string
	// Collect fills s. It must respect ctx's deadline.
	Collect(ctx context.Context, s *Sample) error
}

// Sampler publishes one Sample per interval for one target. Every source runs
// with a deadline (the prompt kernel sources one after the other, the others
// concurrently, see gather); a slow or stuck source never delays the sample,
// which is published on time with that source's part left nil and the
// reason recorded in Errors. Slow sources are read on their own clock while
// calm (see Slow).
type Sampler struct {
	Target   string
	Port     int
	NetNS    string
	Sources  []Source
	Interval time.Duration
	// FastInterval is used instead of Interval while Fast reports true
	// (a surge or storm: the minute that matters gets finer resolution),
	// and is the shortest spacing of samples a source's wake-up can cause.
	// Zero means Interval.
	FastInterval time.Duration
	// Fast, when set, is asked after every sample whether the next one
	// should come after FastInterval (the agent's Pace.Fast).
	Fast func() bool
	// Wakes ask for a sample before the interval ends (see Wake): the
	// accept-queue poller's fires when it sees the queue half full, the
	// eBPF source's when a SYN meets a full queue, so a storm is sampled
	// within milliseconds, not at the next tick (source.Set.Wakes).
	Wakes []Wake
	// Deadline bounds each source's Collect. Zero means 80% of the
	// interval the sample closes.
	Deadline time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	running map[string]bool
	last    time.Time
	// latest holds each slow source's latest answer (see Slow).
	latest map[string]reading
	// fastNow is the pace Run chose for the sample being taken: a Slow
	// source's reading is carried only while not fast.
	fastNow bool
	// prevSetup holds the previous sample's accept and setup counters,
	// the base of the next HandshakePending.
	prevSetup setupCounters
	// lastPending is the HandshakePending of the last fresh valkey reading;
	// lastPendingWhy says why it is nil when its counters were there.
	lastPending    *uint64
	lastPendingWhy string
	// kinds caches what each of Sources implements (see kindsLocked).
	kinds []sourceKind
	// promptBuf and othersBuf back due's lists and dctx gather's
	// deadline-only context, reused sample after sample (samples are
	// taken one at a time).
	promptBuf, othersBuf []Source
	dctx                 deadlineOnly
}

// sourceKind is one source's name and optional interfaces, asserted once:
// an assertion to an interface is a hash-table lookup, and a sample at a
// 10 ms interval made a dozen of them.
type sourceKind struct {
	name   string
	slow   Slow   // nil: read every sample
	prompt Prompt // nil: not prompt
}

func (k *sourceKind) slowPeriod() time.Duration {
	if k.slow == nil {
		return 0
	}
	return k.slow.SlowPeriod()
}

func (k *sourceKind) isPrompt() bool { return k.prompt != nil && k.prompt.Prompt() }

// kindsLocked returns the sources' kinds (sm.mu held). Sources do not
// change once sampling started; a different number of them (a test
// reusing a Sampler) is asserted again.
func (sm *Sampler) kindsLocked() []sourceKind {
	if len(sm.kinds) != len(sm.Sources) {
		sm.kinds = make([]sourceKind, len(sm.Sources))
		for i, src := range sm.Sources {
			sm.kinds[i].name = src.Name()
			sm.kinds[i].slow, _ = src.(Slow)
			sm.kinds[i].prompt, _ = src.(Prompt)
		}
	}
	return sm.kinds
}

// setupCounters are the cumulative counters HandshakePending is derived
// from; ok is false when one of them was missing.
type setupCounters struct {
	ok                           bool
	accepts, completed, rejected uint64
}

// setupOf reads s's setup counters.
func setupOf(s *Sample) setupCounters {
	if s.Accepts == nil || s.Valkey == nil || s.Valkey.TotalConnectionsReceived == nil || s.Valkey.RejectedConnections == nil {
		return setupCounters{}
	}
	return setupCounters{ok: true, accepts: *s.Accepts, completed: *s.Valkey.TotalConnectionsReceived, rejected: *s.Valkey.RejectedConnections}
}

// handshakePending is the number of connections accepted between prev and
// cur that did not become clients (completed setup) nor were refused at
// maxclients. When it cannot be told it returns why (a counter missing or
// gone back: a restarted Valkey or eBPF source); "" when cur lacks a
// counter, which its source's errors entry explains.
func handshakePending(prev, cur setupCounters) (uint64, string) {
	switch {
	case !cur.ok:
		return 0, ""
	case !prev.ok:
		return 0, pendingNoInterval
	case cur.accepts < prev.accepts || cur.completed < prev.completed || cur.rejected < prev.rejected:
		return 0, pendingReset
	}
	acc := cur.accepts - prev.accepts
	done := (cur.completed - prev.completed) + (cur.rejected - prev.rejected)
	if done >= acc {
		// Setups that completed for connections accepted in the
		// previous interval (or read a little later than the accept
		// count) leave nothing pending.
		return 0, "ok"
	}
	return acc - done, "ok"
}

// Reasons in errors.handshake_pending: the key is derived from two
// readings, so it can be null although both its sources answered.
const (
	pendingNoInterval = "not derived yet: needs two Valkey readings in a row with eBPF accept counts (first reading, or the one before was missing)"
	pendingReset      = "not derived: a counter went back (Valkey or the eBPF source restarted); derived again from the next reading"
)

// countsPending is errors.counts: the listen part came, but a count of the
// socket hash it runs in the background had not finished.
const countsPending = "not counted yet: syn_recv, established and listen.abandoned come from a background count of the socket hash that has not finished (counts_age_ms gives its age once it has)"

// noteCounts gives a null syn_recv, established or listen.abandoned its
// reason (the contract: a null key has one in errors) when the accept-queue
// source answered without them and said nothing itself.
func noteCounts(s *Sample) {
	if s.Listen == nil || s.Errors == nil {
		return
	}
	if _, failed := s.Errors["listenq"]; failed {
		return
	}
	if s.SynRecv == nil || s.Established == nil || s.Listen.Abandoned == nil {
		s.Errors["counts"] = countsPending
	}
}

// derive fills the keys computed from this sample and the previous one.
//
// While the valkey part is a carried reading (see Slow) its counters stand
// still while the eBPF accept count moves on, so the sample repeats the
// value derived at that reading, and the next fresh reading's value spans
// the time since (the detector divides it by the valkey counters' span).
// A null value always has its reason in errors (the contract): the
// sources' own entries, or errors.handshake_pending.
func (sm *Sampler) derive(s *Sample) {
	noteCounts(s)
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if _, carried := s.SourceAgeMS["valkey"]; carried {
		s.HandshakePending = sm.lastPending
		if sm.lastPending == nil && sm.lastPendingWhy != "" && s.Errors != nil {
			s.Errors["handshake_pending"] = sm.lastPendingWhy
		}
		return
	}
	cur := setupOf(s)
	prev := sm.prevSetup
	sm.prevSetup = cur
	sm.lastPending, sm.lastPendingWhy = nil, ""
	n, why := handshakePending(prev, cur)
	switch why {
	case "ok":
		s.HandshakePending = U64(n)
		sm.lastPending = s.HandshakePending
	case "":
	default:
		sm.lastPendingWhy = why
		if s.Errors != nil {
			s.Errors["handshake_pending"] = why
		}
	}
}

// Prompt is implemented by sources that read only kernel state, and so
// answer within a millisecond or two even while Valkey is stalled. A sample
// a wake-up asked for is published as soon as every prompt source has
// answered: the storm that woke the sampler is judged at once, not when
// the stalled server's source times out. The other sources' parts are
// left out of that sample (errors say "late") and come with the next one.
type Prompt interface {
	Prompt() bool
}

// deadline returns the per-source deadline.
func (sm *Sampler) deadline() time.Duration {
	return sm.deadlineFor(sm.Interval)
}

func (sm *Sampler) deadlineFor(interval time.Duration) time.Duration {
	if sm.Deadline > 0 {
		return sm.Deadline
	}
	d := interval * 8 / 10
	if d <= 0 {
		d = 800 * time.Millisecond
	}
	return d
}

func (sm *Sampler) now() time.Time {
	if sm.Now != nil {
		return sm.Now()
	}
	return time.Now()
}

// Once takes one sample now. Samples of one Sampler are taken one at a
// time: not concurrently with Run or another Once.
func (sm *Sampler) Once(ctx context.Context) *Sample {
	return sm.once(ctx, sm.deadline())
}

func (sm *Sampler) once(ctx context.Context, deadline time.Duration) *Sample {
	return sm.collect(ctx, deadline, false, nil)
}

// lateReason is the error recorded for a source left out of a wake-up's
// early sample.
const lateReason = "late: left out of an early sample asked for by a wake-up"

// collect takes one sample. With promptOnly (a wake-up's sample) it is
// published once every prompt source has answered (see Prompt); so is
// a full one once urgent fires (see gather).
func (sm *Sampler) collect(ctx context.Context, deadline time.Duration, promptOnly bool, urgent <-chan struct{}) *Sample {
	s := sm.gather(ctx, deadline, promptOnly, urgent)
	sm.derive(s)
	return s
}

// Slow is implemented by sources that are expensive to read or whose
// readings move slowly (conntrack statistics, NIC ethtool statistics,
// Valkey's INFO): while the target is calm (Fast reports false) the sampler
// reads them at most about every SlowPeriod, however short the interval, and
// a sample in between carries the source's latest reading, with its age in
// Sample.SourceAgeMS. While Fast reports true (not calm, or the accept queue
// half full), and for a wake-up's sample, every source is read. --interval
// is thereby the cadence of the storm-critical readings (the accept queue,
// eBPF, and the TCP drop counters unless eBPF counts the listener's own
// overflows); at SlowPeriod or longer nothing changes. SlowPeriod is asked
// for every sample and may change (0: read every sample).
type Slow interface {
	SlowPeriod() time.Duration
}

// reading is a slow source's latest answer, carried into the samples taken
// before it is due again.
type reading struct {
	part *Sample
	err  string
	at   time.Time // the Time of the sample it was read for
	took float64   // how long the reading took, ms (source_ms)
}

// carryLocked (sm.mu held) reports whether the source k's latest reading
// may stand in for a fresh one in a sample started at start with the given
// interval, and if so merges it into s. A reading is due again once it is
// SlowPeriod old, less half an interval so that at an interval of
// SlowPeriod every sample still reads it.
func (sm *Sampler) carryLocked(s *Sample, k *sourceKind, start time.Time, interval time.Duration, fast bool) bool {
	if fast || k.slow == nil {
		return false
	}
	period := k.slowPeriod()
	if period <= 0 || period <= interval {
		return false
	}
	r, ok := sm.latest[k.name]
	age := start.Sub(r.at)
	if !ok || age < 0 || age >= period-interval/2 {
		return false
	}
	s.SourceAgeMS[k.name] = float64(age) / float64(time.Millisecond)
	// source_ms keeps every source (stormguard_source_up and the
	// duration metric do not flap between readings): the reading's own.
	s.SourceDurations[k.name] = r.took
	if r.err != "" {
		s.Errors[k.name] = r.err
	}
	s.merge(r.part)
	return true
}

// keep remembers a slow source's fresh answer for the samples that follow.
func (sm *Sampler) keep(name string, part *Sample, err error, at time.Time, took time.Duration) {
	r := reading{part: part, at: at, took: float64(took.Microseconds()) / 1000}
	if err != nil {
		r.err = err.Error()
	}
	sm.mu.Lock()
	if sm.latest == nil {
		sm.latest = map[string]reading{}
	}
	sm.latest[name] = r
	sm.mu.Unlock()
}

// result is one source's answer to gather.
type result struct {
	name string
	part *Sample
	err  error
	took time.Duration
}

// gather runs every due source once within deadline: the prompt sources
// one after the other in the sampler's own goroutine (kernel reads of well
// under a millisecond each that honour the deadline themselves; a goroutine
// each would cost the scheduler's wake-ups and stack growth, more than the
// reads), every other source in a goroutine of its own, so a stalled Valkey
// delays nothing. Slow sources that are not due contribute their latest
// reading (carry). With promptOnly the sample is published once the prompt
// sources have answered; a receive on urgent (a wake-up that is to be
// sampled at once, see Run) turns a full sample into such a one, so a
// stalled Valkey's source cannot hold back the sample that follows.
func (sm *Sampler) gather(ctx context.Context, deadline time.Duration, promptOnly bool, urgent <-chan struct{}) *Sample {
	s := sm.newSample()
	end := time.Now().Add(deadline)
	group, others := sm.due(s)
	launched := len(others)
	var results chan result // nil (never ready) when nothing is launched
	if launched > 0 {
		results = make(chan result, launched)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, end)
		defer cancel()
		for _, src := range others {
			go func(src Source) { results <- sm.collectOne(ctx, src) }(src)
		}
	} else {
		// Only prompt sources, which honour the deadline themselves:
		// no timer to arm and stop (most samples at a short interval).
		sm.dctx = deadlineOnly{ctx, end}
		ctx = &sm.dctx
	}
	expired := func() bool { return ctx.Err() != nil || !time.Now().Before(end) }
	// The prompt sources run here; an answer that comes after the
	// deadline is discarded like a late goroutine's.
	for _, src := range group {
		if expired() {
			sm.mu.Lock()
			sm.running[src.Name()] = false
			sm.mu.Unlock()
			s.Errors[src.Name()] = timeoutReason(deadline)
			continue
		}
		r := sm.collectOne(ctx, src)
		if expired() {
			s.Errors[r.name] = timeoutReason(deadline)
			continue
		}
		sm.record(s, r)
	}
	if len(group) == 0 {
		promptOnly, urgent = false, nil
	}
	for got := 0; got < launched; {
		if promptOnly {
			// Every prompt source answered: publish now with what
			// has come; the others' goroutines finish on their own
			// and their parts are discarded.
			sm.drain(s, results)
			sm.markLate(s)
			return s
		}
		select {
		case r := <-results:
			got++
			sm.record(s, r)
		case <-urgent:
			promptOnly, urgent = true, nil
		case <-ctx.Done():
			sm.timeOut(s, results, deadline)
			return s
		}
	}
	return s
}

// collectOne runs one source and clears its running mark.
func (sm *Sampler) collectOne(ctx context.Context, src Source) result {
	t0 := time.Now()
	part := &Sample{}
	err := src.Collect(ctx, part)
	took := time.Since(t0)
	sm.mu.Lock()
	sm.running[src.Name()] = false
	sm.mu.Unlock()
	return result{name: src.Name(), part: part, err: err, took: took}
}

// timeoutPrefix starts the error recorded for a source that missed the
// sample's deadline.
const timeoutPrefix = "timeout: "

// timeoutReason is the error recorded for a source that missed deadline.
func timeoutReason(deadline time.Duration) string {
	return fmt.Sprintf("%sno answer within %s", timeoutPrefix, deadline)
}

// MissedDeadline reports whether reason is the sampler's own "no answer
// within the sample's deadline", as opposed to an error the source gave.
func MissedDeadline(reason string) bool {
	return strings.HasPrefix(reason, timeoutPrefix)
}

// record merges one answer into s and keeps a slow source's answer for
// the samples that carry it.
func (sm *Sampler) record(s *Sample, r result) {
	s.record(r.name, r.part, r.err, r.took)
	sm.mu.Lock()
	kinds := sm.kindsLocked()
	sm.mu.Unlock()
	for i := range kinds {
		if kinds[i].name == r.name && kinds[i].slowPeriod() > 0 {
			sm.keep(r.name, r.part, r.err, s.Time, r.took)
		}
	}
}

// drain records the answers already waiting on results.
func (sm *Sampler) drain(s *Sample, results <-chan result) {
	for {
		select {
		case r := <-results:
			sm.record(s, r)
		default:
			return
		}
	}
}

// newSample starts a sample now, with the interval since the previous one.
func (sm *Sampler) newSample() *Sample {
	start := sm.now()
	s := &Sample{
		Time:            start,
		Target:          sm.Target,
		Port:            sm.Port,
		NetNS:           sm.NetNS,
		Errors:          map[string]string{},
		SourceAgeMS:     make(map[string]float64, len(sm.Sources)),
		SourceDurations: make(map[string]float64, len(sm.Sources)),
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if !sm.last.IsZero() {
		s.IntervalMS = float64(start.Sub(sm.last).Microseconds()) / 1000
	}
	sm.last = start
	if sm.running == nil {
		sm.running = map[string]bool{}
	}
	return s
}

// due sorts the sources a sample reads now, marking each running: the
// prompt ones, to collect in the caller's goroutine, and the others, each
// to run in a goroutine of its own. A slow source that is not due
// contributes its latest reading to s instead (see Slow), and one still
// running from an earlier sample is left out as stale.
func (sm *Sampler) due(s *Sample) (prompt, others []Source) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	fast := sm.fastNow
	// The regular interval, also for a wake-up's sample: at an Interval
	// of a source's period or more, every sample reads it.
	interval := sm.Interval
	kinds := sm.kindsLocked()
	prompt, others = sm.promptBuf[:0], sm.othersBuf[:0]
	defer func() { sm.promptBuf, sm.othersBuf = prompt, others }()
	for i, src := range sm.Sources {
		k := &kinds[i]
		if sm.carryLocked(s, k, s.Time, interval, fast) {
			continue
		}
		if sm.running[k.name] {
			// The previous collection has not returned: never pile up
			// goroutines behind a stuck source.
			s.Errors[k.name] = "stale: previous collection still running"
			continue
		}
		sm.running[k.name] = true
		if k.isPrompt() {
			prompt = append(prompt, src)
		} else {
			others = append(others, src)
		}
	}
	return prompt, others
}

// deadlineOnly is a context with a deadline but no timer behind it: its
// Done is its parent's, not closed at the deadline. Only for a sample
// whose sources are all prompt: they bound their reads by Deadline, and
// gather checks the deadline itself between them.
type deadlineOnly struct {
	context.Context
	end time.Time
}

func (c *deadlineOnly) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.end) {
		return d, true
	}
	return c.end, true
}

// markLate records every source that has not answered (and was not
// stale) as left out of this early sample.
func (sm *Sampler) markLate(s *Sample) {
	for _, src := range sm.Sources {
		name := src.Name()
		if _, done := s.SourceDurations[name]; done {
			continue
		}
		if _, carried := s.SourceAgeMS[name]; carried {
			continue
		}
		if _, stale := s.Errors[name]; !stale {
			s.Errors[name] = lateReason
		}
	}
}

// timeOut records whatever has not answered by the deadline as timed out;
// its goroutine finishes on its own and its part is discarded.
func (sm *Sampler) timeOut(s *Sample, results <-chan result, deadline time.Duration) {
	pending := map[string]bool{}
	for _, src := range sm.Sources {
		_, done := s.SourceDurations[src.Name()]
		_, carried := s.SourceAgeMS[src.Name()]
		if !done && !carried {
			if _, stale := s.Errors[src.Name()]; !stale {
				pending[src.Name()] = true
			}
		}
	}
	// Drain answers that raced with the deadline.
	for {
		select {
		case r := <-results:
			delete(pending, r.name)
			sm.record(s, r)
			continue
		default:
		}
		break
	}
	for name := range pending {
		s.Errors[name] = timeoutReason(deadline)
	}
}

// record merges one source's answer into s with how long it took.
func (s *Sample) record(name string, part *Sample, err error, took time.Duration) {
	s.SourceDurations[name] = float64(took.Microseconds()) / 1000
	if err != nil {
		s.Errors[name] = err.Error()
	}
	s.merge(part)
}

// Run publishes a sample every Interval (FastInterval while Fast says so)
// until ctx is done, and early when Wakes asks (see Wake for when an
// early sample comes at once and when FastInterval after the previous
// one). When a tick is missed (the process was descheduled) the next
// sample reports the longer IntervalMS instead of bunching up.
func (sm *Sampler) Run(ctx context.Context, publish func(*Sample)) {
	fast := sm.FastInterval
	if fast <= 0 || fast > sm.Interval {
		fast = sm.Interval
	}
	clk := newSleeper()
	defer clk.close()
	// The end of ctx and every wake-up interrupt the sleep (see wait).
	stop := context.AfterFunc(ctx, clk.interrupt)
	defer stop()
	ws := newWakes(sm.Interval)
	ws.notify = clk.interrupt
	for _, w := range sm.Wakes {
		go ws.forward(ctx, w)
	}
	next := sm.Interval
	regular, atOnce, isFast := true, false, false
	for {
		start := time.Now()
		if regular {
			ws.renew(start)
		}
		var urgent <-chan struct{}
		if !atOnce {
			// A sample that waits for every source gives way to a
			// wake-up that is to be sampled at once.
			urgent = ws.urgent
		}
		sm.mu.Lock()
		// A wake-up's sample reads every source too: something moved.
		sm.fastNow = isFast || !regular
		sm.mu.Unlock()
		publish(sm.collect(ctx, sm.deadlineFor(next), atOnce, urgent))
		next = sm.Interval
		isFast = sm.Fast != nil && sm.Fast()
		if isFast {
			next = fast
		}
		var ok bool
		if regular, atOnce, ok = sm.wait(ctx, clk, ws, start, next, fast); !ok {
			return
		}
		if !regular {
			next = fast
		}
	}
}

// wait blocks until the next sample is due: at start+next (regular), or
// at a wake-up — at once when ws says so (atOnce), otherwise no sooner
// than start+fast. ok is false when ctx ended. The sampler sleeps in its
// own goroutine (see fdSleeper); a wake-up or the end of ctx interrupts
// the sleep, and a sleep may also end early or stale, so after each the
// context, the wake-ups and the time are checked again.
func (sm *Sampler) wait(ctx context.Context, clk sleeper, ws *wakes, start time.Time, next, fast time.Duration) (regular, atOnce, ok bool) {
	due := start.Add(next)
	spaced := false // a wake-up was taken: sample at start+fast
	for {
		if ctx.Err() != nil {
			return false, false, false
		}
		target := due
		if spaced {
			target = start.Add(fast)
		}
		left := time.Until(target)
		if left <= 0 {
			return !spaced, false, true
		}
		if !spaced {
			select {
			case <-ws.signal:
				level, now := ws.take(time.Now())
				if now {
					return false, true, true
				}
				// level 0: already taken with an earlier signal.
				spaced = level != 0
				continue
			default:
			}
		}
		clk.arm(left)
		clk.sleep()
	}
}

// merge copies the parts o has into s. Each source fills distinct fields, so
// a non-nil field in o is that source's answer.
func (s *Sample) merge(o *Sample) {
	if o.Listen != nil {
		s.Listen = o.Listen
	}
	if o.AcceptWaitMS != nil {
		s.AcceptWaitMS = o.AcceptWaitMS
	}
	if o.SynRate != nil {
		s.SynRate = o.SynRate
	}
	if o.AcceptWaitHist != nil {
		s.AcceptWaitHist = o.AcceptWaitHist
	}
	if o.PortOverflows != nil {
		s.PortOverflows = o.PortOverflows
	}
	if o.Accepts != nil {
		s.Accepts = o.Accepts
	}
	// The eBPF source's per-listener overflows belong under listen, which
	// the accept-queue source fills: join them whichever answered first.
	if s.Listen != nil && s.PortOverflows != nil {
		s.Listen.OverflowsPort = s.PortOverflows
	}
	if o.SynRecv != nil {
		s.SynRecv = o.SynRecv
	}
	if o.Established != nil {
		s.Established = o.Established
	}
	if o.CountsAgeMS != nil {
		s.CountsAgeMS = o.CountsAgeMS
	}
	if o.TCP != nil {
		s.TCP = o.TCP
	}
	if o.Conntrack != nil {
		s.Conntrack = o.Conntrack
	}
	if o.Valkey != nil {
		s.Valkey = o.Valkey
	}
	if o.NIC != nil {
		s.NIC = o.NIC
	}
}
