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

	dials      atomic.Int64
	dialFails  atomic.Int64
	failedCmds atomic.Int64

	warm      []atomic.Bool // client completed a PING at least once
	warmCount atomic.Int64

	lastErr atomic.Value // string: the latest dial or command error, for messages

	t0          atomic.Int64   // disruption time (ns since start), 0 = not yet
	recoveredAt []atomic.Int64 // per client, ns since start of first PING sent ≥ t0 that succeeded
	recovered   atomic.Int64
}

func newRecorder(clients int, horizon time.Duration) *recorder {
	return &recorder{
		start:       time.Now(),
		timeline:    make([]atomic.Int64, int(horizon/Bucket)+1),
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

func (r *recorder) dialFailed(err error) {
	r.dialFails.Add(1)
	r.lastErr.Store(err.Error())
}

func (r *recorder) failedCommand(err error) {
	r.failedCmds.Add(1)
	r.lastErr.Store(err.Error())
}

// lastError is the latest dial or command error ("" if none).
func (r *recorder) lastError() string {
	s, _ := r.lastErr.Load().(string)
	return s
}

// pingOK records that client id's PING sent at sent succeeded now.
func (r *recorder) pingOK(id int, sent time.Time) {
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
