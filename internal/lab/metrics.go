package lab

import (
	"math"
	"slices"
	"sync/atomic"
	"time"
)

// Bucket is the resolution of the connect timeline.
const Bucket = 100 * time.Millisecond

// RecoverQuantile is the share of clients that must have completed a PING
// after the disruption for the run to count as recovered.
const RecoverQuantile = 0.99

// recorder counts what the clients do. All methods are safe for
// concurrent use; times are nanoseconds since start.
type recorder struct {
	start    time.Time
	timeline []atomic.Int64 // dials per Bucket since start
	// Per Bucket since start: failed dials, completed and failed
	// commands (the goodput timeline).
	connFails, oks, cmdFails []atomic.Int64

	dials      atomic.Int64
	dialFails  atomic.Int64
	failedCmds atomic.Int64

	warm      []atomic.Bool // client completed a PING at least once
	warmCount atomic.Int64

	lastErr atomic.Value // string: the latest dial or command error, for messages

	// holding is set while the fleet holds before the disruption: the
	// PINGs completed then go into rtt (their round trips).
	holding atomic.Bool
	rtt     rttHist

	t0          atomic.Int64   // disruption time (ns since start), 0 = not yet
	recoveredAt []atomic.Int64 // per client, ns since start of first PING sent ≥ t0 that succeeded
	recovered   atomic.Int64
}

func newRecorder(clients int, horizon time.Duration) *recorder {
	return &recorder{
		start:       time.Now(),
		timeline:    make([]atomic.Int64, int(horizon/Bucket)+1),
		connFails:   make([]atomic.Int64, int(horizon/Bucket)+1),
		oks:         make([]atomic.Int64, int(horizon/Bucket)+1),
		cmdFails:    make([]atomic.Int64, int(horizon/Bucket)+1),
		warm:        make([]atomic.Bool, clients),
		recoveredAt: make([]atomic.Int64, clients),
	}
}

func (r *recorder) since(t time.Time) int64 { return max(int64(t.Sub(r.start)), 1) }

// dial records one network dial starting now.
func (r *recorder) dial() { r.addDials(1) }

// addDialsOver records n dials known only to have happened between from
// and to (two samples of a kernel counter). They are spread over the
// buckets in proportion to each bucket's share of the interval: a sample
// that came late (the sampler starved by the storm it measures) must not
// show its whole interval as one bucket's burst.
func (r *recorder) addDialsOver(n int64, from, to time.Time) {
	if n <= 0 {
		return
	}
	lo, hi := max(from.Sub(r.start), 0), max(to.Sub(r.start), 0)
	last := len(r.timeline) - 1
	r.dials.Add(n)
	if hi <= lo {
		r.timeline[min(int(hi/Bucket), last)].Add(n)
		return
	}
	left := n
	for b := lo / Bucket; left > 0; b++ {
		i := min(int(b), last)
		end := min((b+1)*Bucket, hi)
		share := int64(math.Round(float64(n) * float64(end-max(b*Bucket, lo)) / float64(hi-lo)))
		if end >= hi || i == last {
			share = left
		}
		share = min(share, left)
		r.timeline[i].Add(share)
		left -= share
	}
}

// addDials records n network dials seen since the last call (a kernel
// counter's delta, for a client library whose dials the lab cannot hook).
func (r *recorder) addDials(n int64) {
	if n <= 0 {
		return
	}
	r.dials.Add(n)
	i := int(time.Since(r.start) / Bucket)
	if i >= len(r.timeline) {
		i = len(r.timeline) - 1
	}
	r.timeline[i].Add(n)
}

// bucket is the index of the Bucket holding now.
func (r *recorder) bucket() int {
	return min(int(time.Since(r.start)/Bucket), len(r.timeline)-1)
}

func (r *recorder) dialFailed(err error) {
	r.dialFails.Add(1)
	r.connFails[r.bucket()].Add(1)
	r.lastErr.Store(err.Error())
}

func (r *recorder) failedCommand(err error) {
	r.failedCmds.Add(1)
	r.cmdFails[r.bucket()].Add(1)
	r.lastErr.Store(err.Error())
}

// lastError is the latest dial or command error ("" if none).
func (r *recorder) lastError() string {
	s, _ := r.lastErr.Load().(string)
	return s
}

// pingOK records that client id's PING sent at sent succeeded now.
func (r *recorder) pingOK(id int, sent time.Time) {
	r.oks[r.bucket()].Add(1)
	if r.holding.Load() {
		r.rtt.add(time.Since(sent))
	}
	if !r.warm[id].Load() && r.warm[id].CompareAndSwap(false, true) {
		r.warmCount.Add(1)
	}
	t0 := r.t0.Load()
	if t0 == 0 || r.since(sent) < t0 || r.recoveredAt[id].Load() != 0 {
		return
	}
	if r.recoveredAt[id].CompareAndSwap(0, r.since(time.Now())) {
		r.recovered.Add(1)
	}
}

// disrupted marks the disruption as happening now.
func (r *recorder) disrupted() time.Time {
	now := time.Now()
	r.t0.Store(r.since(now))
	return now
}

// recoveryTimes returns, per recovered client, the time from the
// disruption to its first successful PING.
func (r *recorder) recoveryTimes() []time.Duration {
	t0 := r.t0.Load()
	var out []time.Duration
	for i := range r.recoveredAt {
		if at := r.recoveredAt[i].Load(); at != 0 {
			out = append(out, time.Duration(at-t0))
		}
	}
	return out
}

// timelineFrom returns the dial counts per Bucket from offset from (ns
// since start) up to and including offset to.
func (r *recorder) timelineFrom(from, to int64) []int64 {
	lo, hi := int(from/int64(Bucket)), int(to/int64(Bucket))
	hi = min(hi, len(r.timeline)-1)
	out := make([]int64, 0, max(hi-lo+1, 0))
	for i := lo; i <= hi; i++ {
		out = append(out, r.timeline[i].Load())
	}
	return out
}

// timeToRecover is the time by which ⌈q·clients⌉ clients had recovered,
// or false if fewer did. times need not be sorted.
func timeToRecover(times []time.Duration, clients int, q float64) (time.Duration, bool) {
	need := int(math.Ceil(q * float64(clients)))
	if need < 1 {
		need = 1
	}
	if len(times) < need {
		return 0, false
	}
	s := slices.Clone(times)
	slices.Sort(s)
	return s[need-1], true
}

// quantile of times (nearest rank); 0 for none.
func quantile(times []time.Duration, q float64) time.Duration {
	if len(times) == 0 {
		return 0
	}
	s := slices.Clone(times)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// peakRates returns the busiest Bucket scaled to per second, and the
// busiest sliding one-second window.
func peakRates(timeline []int64) (perBucket, perSecond int64) {
	per := int64(time.Second / Bucket)
	w := int(per)
	var sum int64
	for i, v := range timeline {
		perBucket = max(perBucket, v*per)
		sum += v
		if i >= w {
			sum -= timeline[i-w]
		}
		perSecond = max(perSecond, sum)
	}
	return perBucket, perSecond
}

// Point is one Bucket of a run's timeline.
type Point struct {
	// TMS is the bucket's start in milliseconds from the disruption
	// (negative before it).
	TMS             int64 `json:"t_ms"`
	Connects        int64 `json:"connects"`
	ConnectFailures int64 `json:"connect_failures"`
	OKCommands      int64 `json:"ok_commands"`
	FailedCommands  int64 `json:"failed_commands"`
}

// points returns the timeline from offset from to offset to (ns since
// start), with times relative to t0 (ns since start).
func (r *recorder) points(from, to, t0 int64) []Point {
	lo, hi := int(from/int64(Bucket)), min(int(to/int64(Bucket)), len(r.timeline)-1)
	out := make([]Point, 0, max(hi-lo+1, 0))
	for i := lo; i <= hi; i++ {
		out = append(out, Point{
			TMS:      floorMS(int64(i)*int64(Bucket) - t0),
			Connects: r.timeline[i].Load(), ConnectFailures: r.connFails[i].Load(),
			OKCommands: r.oks[i].Load(), FailedCommands: r.cmdFails[i].Load(),
		})
	}
	return out
}

// floorMS converts ns to whole milliseconds rounding down, also below 0:
// a bucket that starts 0.4 ms before t0 starts at -1, not at 0 (it is not
// after the disruption), and consecutive buckets stay Bucket apart (a
// division truncating toward 0 gave -10 then 89).
func floorMS(ns int64) int64 {
	ms := ns / int64(time.Millisecond)
	if ns%int64(time.Millisecond) < 0 {
		ms--
	}
	return ms
}

// recoveredWithin keeps the recovery times within the observation (d
// after t0): a client that recovered later, while the run waited for its
// scenario to finish (a restart whose --down outlasts --duration), did not
// recover within --duration.
func recoveredWithin(times []time.Duration, d time.Duration) []time.Duration {
	out := times[:0:0]
	for _, t := range times {
		if t <= d {
			out = append(out, t)
		}
	}
	return out
}

// goodput holds the goodput figures of a result.
type goodput struct {
	before, minRatio, endRatio *float64
	// back80 is when, after t0, the first one-second window whose rate is
	// at least 80% of before ended (ms after t0); nil if none did.
	back80 *int64
}

// GoodputBackShare is the share of the goodput before the disruption that
// goodput_back_ms waits for.
const GoodputBackShare = 0.8

// goodputOf computes completed commands per second before the disruption
// (the whole buckets of the window that end by preEnd, in ms relative to
// t0, at most 0: the disruption may have started before t0 was marked)
// and, after t0, the lowest and the last one-second window's rate as a
// ratio of that, and when the rate was first back to GoodputBackShare of
// it. pts starts before t0; windows are whole buckets.
func goodputOf(pts []Point, window time.Duration, preEnd int64) goodput {
	var g goodput
	per := int(window / Bucket)
	var pre []Point
	var post []Point
	for _, p := range pts {
		switch {
		case p.TMS+Bucket.Milliseconds() <= min(preEnd, 0):
			pre = append(pre, p)
		case p.TMS >= 0:
			post = append(post, p)
		} // the bucket the disruption fell in is neither
	}
	if len(pre) > per {
		pre = pre[len(pre)-per:]
	}
	rate := func(ps []Point) float64 {
		var n int64
		for _, p := range ps {
			n += p.OKCommands
		}
		return float64(n) / (float64(len(ps)) * Bucket.Seconds())
	}
	if len(pre) == 0 {
		return g
	}
	b := rate(pre)
	g.before = &b
	if b <= 0 || len(post) == 0 {
		return g
	}
	w := min(per, len(post))
	lo := math.Inf(1)
	for i := 0; i+w <= len(post); i++ {
		r := rate(post[i:i+w]) / b
		lo = min(lo, r)
		if g.back80 == nil && w == per && r >= GoodputBackShare {
			ms := post[i+w-1].TMS + Bucket.Milliseconds()
			g.back80 = &ms
		}
	}
	end := rate(post[len(post)-w:]) / b
	g.minRatio, g.endRatio = &lo, &end
	return g
}

// rttHist is a histogram of round trips with buckets 2% wide (log scale
// from 1 µs to ~100 s), so that recording one costs an atomic add.
type rttHist struct {
	n [rttBuckets]atomic.Int64
}

const (
	rttBuckets = 1300
	rttGrowth  = 1.02
)

func (h *rttHist) add(d time.Duration) {
	us := float64(d) / float64(time.Microsecond)
	i := 0
	if us > 1 {
		i = min(int(math.Log(us)/math.Log(rttGrowth)), rttBuckets-1)
	}
	h.n[i].Add(1)
}

// quantile returns the q-quantile's bucket as its geometric middle (±1%)
// in milliseconds, or nil without samples.
func (h *rttHist) quantile(q float64) *float64 {
	var total int64
	for i := range h.n {
		total += h.n[i].Load()
	}
	if total == 0 {
		return nil
	}
	want := int64(math.Ceil(q * float64(total)))
	var seen int64
	for i := range h.n {
		if seen += h.n[i].Load(); seen >= max(want, 1) {
			ms := math.Pow(rttGrowth, float64(i)+0.5) / 1000
			ms = math.Round(ms*1000) / 1000
			return &ms
		}
	}
	return nil
}
