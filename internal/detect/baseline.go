package detect

import (
	"math"
	"slices"
	"time"
)

// baseline is a robust "normal level" of a rate: samples (only calm ones;
// the detector decides) are averaged over fixed buckets, and the baseline is
// the median of the last n bucket means. The median ignores a few odd
// buckets (a deploy, a batch job), and buckets keep the cost per sample O(1):
// the median of at most n values is recomputed once per bucket.
type baseline struct {
	bucket time.Duration
	n, min int

	curStart time.Time
	curLast  time.Time
	curSum   float64
	curN     int
	// seed: with no bucket closed yet, the bucket in progress counts once
	// it spans this long, so a steady level present from the start is
	// the baseline within seconds (0: never).
	seed time.Duration

	means   []float64 // ring of bucket means, len <= n
	next    int       // ring write position once full
	scratch []float64
	val     float64
}

func newBaseline(bucket time.Duration, n, min int) *baseline {
	return &baseline{bucket: bucket, n: n, min: min, means: make([]float64, 0, n), scratch: make([]float64, 0, n)}
}

// add feeds one calm sample taken at t.
func (b *baseline) add(t time.Time, v float64) {
	if b.curN > 0 && (t.Sub(b.curStart) >= b.bucket || t.Before(b.curStart)) {
		b.closeBucket()
	}
	if b.curN == 0 {
		b.curStart = t
	}
	b.curSum += v
	b.curN++
	b.curLast = t
}

// discard drops the bucket in progress: called when the target leaves calm,
// so the lead-in of a surge is not learned as normal. A seed already in
// use (no bucket closed yet) is kept as the first bucket instead: dropping
// it would leave the target without any baseline exactly when it needs one.
func (b *baseline) discard() {
	if _, seeded := b.seedValue(); seeded {
		b.closeBucket()
		return
	}
	b.curSum, b.curN = 0, 0
}

// seedValue is the bucket in progress standing in for a baseline before
// any bucket closed.
func (b *baseline) seedValue() (float64, bool) {
	if len(b.means) == 0 && b.seed > 0 && b.curN > 1 && b.curLast.Sub(b.curStart) >= b.seed {
		return b.curSum / float64(b.curN), true
	}
	return 0, false
}

func (b *baseline) closeBucket() {
	m := b.curSum / float64(b.curN)
	b.curSum, b.curN = 0, 0
	if len(b.means) < b.n {
		b.means = append(b.means, m)
	} else {
		b.means[b.next] = m
		b.next = (b.next + 1) % b.n
	}
	b.scratch = append(b.scratch[:0], b.means...)
	slices.Sort(b.scratch)
	k := len(b.scratch)
	if k%2 == 1 {
		b.val = b.scratch[k/2]
	} else {
		b.val = (b.scratch[k/2-1] + b.scratch[k/2]) / 2
	}
}

// value returns the baseline and whether enough buckets back it.
func (b *baseline) value() (float64, bool) {
	if v, ok := b.seedValue(); ok {
		return v, true
	}
	if len(b.means) < b.min {
		return 0, false
	}
	return b.val, true
}

// reset makes v the learned level at once (after a sustained, harmless
// change of load).
func (b *baseline) reset(v float64) {
	b.means = b.means[:0]
	b.next = 0
	b.discard()
	for i := 0; i < b.min; i++ {
		b.means = append(b.means, v)
	}
	b.val = v
}

// gaugeHist keeps the recent readings of one gauge to measure its growth
// rate over a trailing window (for forecasts). Fixed size, times as Unix
// nanoseconds: no allocation and little work per sample.
type gaugeHist struct {
	t    [128]int64 // 12.8 s at the fastest sampling: a whole ForecastWindow
	v    [128]float64
	head int // next write
	n    int
}

func (g *gaugeHist) add(at time.Time, v float64) {
	t := at.UnixNano()
	if g.n > 0 && t <= g.t[(g.head+len(g.t)-1)%len(g.t)] {
		// Time went backwards or stood still: start over rather than
		// divide by zero or a negative span.
		g.n = 0
	}
	g.t[g.head], g.v[g.head] = t, v
	g.head = (g.head + 1) % len(g.t)
	if g.n < len(g.t) {
		g.n++
	}
}

// slope returns the growth per second from the newest reading back to the
// newest reading at least window older (or the oldest one kept, if none is
// that old), and false with fewer than two readings or a span above maxSpan.
func (g *gaugeHist) slope(window, maxSpan time.Duration) (float64, bool) {
	if g.n < 2 {
		return 0, false
	}
	size := len(g.t)
	newest := (g.head + size - 1) % size
	from := g.t[newest] - int64(window)
	j := newest
	for i := 1; i < g.n; i++ {
		j = (newest - i + size) % size
		if g.t[j] <= from {
			break
		}
	}
	span := g.t[newest] - g.t[j]
	if span <= 0 || span > int64(maxSpan) {
		return 0, false
	}
	return (g.v[newest] - g.v[j]) / (float64(span) / 1e9), true
}

func (g *gaugeHist) clear() { g.n = 0 }

// baselines are the learned normal levels of one target: the two
// new-connection rates, PING latency, SYN_RECV and the accept wait.
type baselines struct {
	passive, valkey, ping, synRecv, acceptWait *baseline
}

func newBaselines(cfg *Config) baselines {
	nb := func() *baseline {
		b := newBaseline(cfg.BaselineBucket, cfg.BaselineBuckets, cfg.BaselineMinBuckets)
		b.seed = cfg.RateWindow
		return b
	}
	return baselines{passive: nb(), valkey: nb(), ping: nb(), synRecv: nb(), acceptWait: nb()}
}

// levels returns the smoothed new-connection rates with their surge
// thresholds: max(NewConnFloor, NewConnFactor × baseline), the floor alone
// while no baseline is learned.
func (b *baselines) levels(cfg *Config, d *derived) newConnLevels {
	thr := func(bl *baseline) (float64, *float64) {
		t := cfg.NewConnFloor // shown while no baseline is known; the rule then stays silent
		if bv, ok := bl.value(); ok {
			return max(t, cfg.NewConnFactor*bv), f64(bv)
		}
		return t, nil
	}
	l := newConnLevels{pRate: d.smoothPassive, vRate: d.smoothValkey}
	l.pThr, l.pBase = thr(b.passive)
	l.vThr, l.vBase = thr(b.valkey)
	return l
}

// annotate writes the baselines and the watched new-connection rate into
// the view: PassiveOpens when available (it sees connections Valkey has
// not accepted yet), else Valkey's own counter.
func (b *baselines) annotate(v *View, l *newConnLevels) {
	if p, ok := b.ping.value(); ok {
		v.PingBaselineMS = f64(p)
	}
	if w, ok := b.acceptWait.value(); ok {
		v.AcceptWaitBaselineMS = f64(w)
	}
	v.NewConnRateInstance = l.vRate
	switch {
	case l.pRate != nil:
		v.NewConnRate, v.NewConnSource, v.NewConnScope = l.pRate, counterTable[cPassive].name, ScopeNamespace
		v.NewConnBaseline, v.NewConnThreshold = l.pBase, f64(l.pThr)
	case l.vRate != nil:
		v.NewConnRate, v.NewConnSource, v.NewConnScope = l.vRate, counterTable[cValkeyConns].name, ScopeInstance
		v.NewConnBaseline, v.NewConnThreshold = l.vBase, f64(l.vThr)
	}
}

// learn feeds one sample: only samples taken in calm with no signal are
// learned; anything else discards the bucket in progress, so the lead-in
// of a surge is not learned as normal.
func (b *baselines) learn(now time.Time, quiet bool, v *View, d *derived) {
	if !quiet {
		b.passive.discard()
		b.valkey.discard()
		b.ping.discard()
		b.synRecv.discard()
		b.acceptWait.discard()
		return
	}
	if w := v.AcceptWaitP99MS; w != nil {
		b.acceptWait.add(now, *w)
	}
	if n := v.SynRecv; n != nil {
		b.synRecv.add(now, float64(*n))
	}
	if r := d.smoothPassive; r != nil {
		b.passive.add(now, *r)
	}
	if r := d.smoothValkey; r != nil {
		b.valkey.add(now, *r)
	}
	if p := v.PingMS; p != nil {
		b.ping.add(now, *p)
	}
}

// synRecvBase is the learned SYN_RECV level (nil: none yet).
func (b *baselines) synRecvBase() *float64 {
	if v, ok := b.synRecv.value(); ok {
		return f64(v)
	}
	return nil
}

// relearn makes the current new-connection rates the learned normal.
func (b *baselines) relearn(d *derived) {
	if r := d.smoothPassive; r != nil {
		b.passive.reset(*r)
	}
	if r := d.smoothValkey; r != nil {
		b.valkey.reset(*r)
	}
}

// at returns the newest reading taken at or before t (Unix ns).
func (g *gaugeHist) at(t int64) (v float64, when int64, ok bool) {
	size := len(g.t)
	for i := 0; i < g.n; i++ {
		j := (g.head - 1 - i + 2*size) % size
		if g.t[j] <= t {
			return g.v[j], g.t[j], true
		}
	}
	return 0, 0, false
}

// sustainedGrowth reports whether the gauge grew across the whole
// trailing window and is still growing: each half of the window holds at
// least an eighth of the total growth (a quadratic ramp holds a quarter in
// its first half; one spike holds none), and the newest reading is above
// the one before it. One spike, or a climb that has stopped, is not a
// trend.
func (g *gaugeHist) sustainedGrowth(window time.Duration) bool {
	return g.sustainedGrowthFrom(window, math.Inf(-1))
}

// sustainedGrowthFrom is sustainedGrowth that also needs the reading at the
// window's start to be at least floor: for the accept queue, connections
// have been waiting for the whole window (a stall of half a second that
// fills the queue and drains again is not a trend).
func (g *gaugeHist) sustainedGrowthFrom(window time.Duration, floor float64) bool {
	if g.n < 3 || window <= 0 {
		return false
	}
	size := len(g.t)
	newest := (g.head + size - 1) % size
	prev := (g.head + size - 2) % size
	tN, vN := g.t[newest], g.v[newest]
	v0, t0, ok0 := g.at(tN - int64(window))
	vM, tM, okM := g.at(tN - int64(window)/2)
	if !ok0 || !okM || t0 >= tM || tM >= tN || vN <= g.v[prev] || v0 < floor {
		return false
	}
	total := vN - v0
	return total > 0 && vM-v0 >= total/8 && vN-vM >= total/8
}
