package detect

import (
	"fmt"
	"time"
)

// Config tunes the detector. The zero value of every field means its
// default (listed per field); docs/detector.md explains each default. Use
// Config{} unless you know why a default does not fit.
type Config struct {
	// Target names the listener in events and views ("127.0.0.1:6379").
	// Empty: taken from Sample.Target.
	Target string

	// NewConnFactor: the new-connection rate is a surge signal above
	// NewConnFactor × its learned baseline. Default 4.
	NewConnFactor float64
	// NewConnFloor: ... and only above this absolute rate, in new
	// connections per second, whatever the baseline. Default 400.
	NewConnFloor float64

	// RateWindow: the new-connection rate is averaged over this trailing
	// window, so a 100 ms sample holding one pool's burst does not read as
	// a storm. Default 1s.
	RateWindow time.Duration

	// BaselineBucket: baselines average calm samples over buckets of this
	// length. Default 10s.
	BaselineBucket time.Duration
	// BaselineBuckets: a baseline is the median of the last this many
	// bucket means. Default 30 (5 minutes of calm at the default bucket).
	BaselineBuckets int
	// BaselineMinBuckets: buckets needed before a baseline is trusted;
	// until then only the floors apply. Default 1 (10 s): a steady rate
	// present from the agent's start is the baseline within seconds.
	BaselineMinBuckets int
	// RelearnAfter: when the new-connection rate alone has kept the target
	// in surge (no drops, no queue, forecast or latency signal) this long,
	// the new level is accepted as normal and the baseline restarts from it.
	// Default 10m.
	RelearnAfter time.Duration

	// TrendWindow: accept-queue occupancy and SYN_RECV must stay high,
	// and the accept queue must keep growing, for this long (at least
	// two sampling intervals) before they warn: one burst is not a
	// trend. Default 1s.
	TrendWindow time.Duration
	// HeadroomOccupancy: connected clients (of maxclients) or conntrack
	// entries (of the table) at or above this fraction put capacity at
	// risk, so a high new-connection rate then warns at once. Default 0.75.
	HeadroomOccupancy float64
	// ChurnFraction: during a storm, new connections above their
	// threshold of which at least this fraction close again at once
	// (accepted, then abandoned: timed-out handshakes, clients that gave
	// up in the queue) keep the storm going. Default 0.5.
	ChurnFraction float64

	// AcceptHighOccupancy: this port's accept-queue peak (depth_max/limit)
	// at or above this fraction is a surge signal, and counts as per-port
	// pressure when attributing namespace-wide drops. Default 0.5.
	AcceptHighOccupancy float64
	// AcceptMinDepth: ... but only when at least this many connections
	// waited (tiny test backlogs). Default 4.
	AcceptMinDepth uint64
	// SynRecvMin: this port's SYN_RECV count at or above
	// min(SynRecvMin, limit/2) is a surge signal. Default 64.
	SynRecvMin uint64

	// ForecastHorizon: a resource (conntrack table, accept queue,
	// maxclients) forecast to run out within this time at the current
	// growth rate is a surge signal. Default 30s.
	ForecastHorizon time.Duration
	// ForecastWindow: growth rates for the conntrack and maxclients
	// forecasts are measured over this trailing window, and the growth
	// must be sustained across it. Default 10s.
	ForecastWindow time.Duration
	// ForecastMinOccupancy: forecasts alarm only once the resource is at
	// least this full. Default 0.25.
	ForecastMinOccupancy float64

	// PingFactor and PingFloorMS: PING latency over the reserved
	// connection above max(PingFactor × baseline, PingFloorMS) is a surge
	// signal while new connections arrive above their threshold (a
	// stalled server with clients redialling). Defaults 10 and 100 ms.
	PingFactor  float64
	PingFloorMS float64
	// PingSustain: consecutive samples the latency must stay high.
	// Default 2.
	PingSustain int

	// AcceptWaitFactor and AcceptWaitFloorMS: a p99 accept wait (eBPF:
	// handshake done → accept()) above max(AcceptWaitFactor × baseline,
	// AcceptWaitFloorMS), not falling, for AcceptWaitSustain consecutive
	// samples while new connections arrive above their threshold is a
	// surge signal: Valkey is falling behind before its queue fills.
	// Defaults 10, 50 ms and 3.
	AcceptWaitFactor  float64
	AcceptWaitFloorMS float64
	AcceptWaitSustain int

	// StormMinDrops: dropped/refused connections in one interval needed
	// for a storm signal (per counter). Default 1.
	StormMinDrops uint64
	// InsertFailedMinRate: conntrack insert_failed (also seen on healthy
	// hosts from UDP races) is a storm signal only at this rate per second
	// or more. Default 5.
	InsertFailedMinRate float64

	// StormQuiet: storm → recovering after this long without a storm
	// signal. Doubles after every relapse (recovering → storm) until the
	// target is calm again, capped at CalmQuiet. Default 5s.
	StormQuiet time.Duration
	// CalmQuiet: recovering → calm after this long without storm or surge
	// signals. Default 30s.
	CalmQuiet time.Duration
	// SurgeQuiet: surge → calm after this long without surge signals.
	// Default 10s.
	SurgeQuiet time.Duration

	// MaxGap: two readings of a counter further apart than this give no
	// rate (a stalled source); the next interval starts afresh. Default 60s.
	MaxGap time.Duration
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	setF := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	setD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setF(&c.NewConnFactor, 4)
	setF(&c.NewConnFloor, 400)
	setD(&c.RateWindow, time.Second)
	setD(&c.BaselineBucket, 10*time.Second)
	if c.BaselineBuckets == 0 {
		c.BaselineBuckets = 30
	}
	if c.BaselineMinBuckets == 0 {
		c.BaselineMinBuckets = 1
	}
	setD(&c.RelearnAfter, 10*time.Minute)
	setD(&c.TrendWindow, time.Second)
	setF(&c.HeadroomOccupancy, 0.75)
	setF(&c.ChurnFraction, 0.5)
	setF(&c.AcceptHighOccupancy, 0.5)
	if c.AcceptMinDepth == 0 {
		c.AcceptMinDepth = 4
	}
	if c.SynRecvMin == 0 {
		c.SynRecvMin = 64
	}
	setD(&c.ForecastHorizon, 30*time.Second)
	setD(&c.ForecastWindow, 10*time.Second)
	setF(&c.ForecastMinOccupancy, 0.25)
	setF(&c.PingFactor, 10)
	setF(&c.PingFloorMS, 100)
	if c.PingSustain == 0 {
		c.PingSustain = 2
	}
	setF(&c.AcceptWaitFactor, 10)
	setF(&c.AcceptWaitFloorMS, 50)
	if c.AcceptWaitSustain == 0 {
		c.AcceptWaitSustain = 3
	}
	if c.StormMinDrops == 0 {
		c.StormMinDrops = 1
	}
	setF(&c.InsertFailedMinRate, 5)
	setD(&c.StormQuiet, 5*time.Second)
	setD(&c.CalmQuiet, 30*time.Second)
	setD(&c.SurgeQuiet, 10*time.Second)
	setD(&c.MaxGap, 60*time.Second)
	return c
}

// Validate reports the first nonsensical field (negative values, fractions
// outside (0,1], a minimum larger than its window). Zero fields are fine:
// they mean the default.
func (c Config) Validate() error {
	d := c.withDefaults()
	switch {
	case d.NewConnFactor < 1:
		return fmt.Errorf("detector config: NewConnFactor %v must be >= 1", c.NewConnFactor)
	case d.NewConnFloor < 0:
		return fmt.Errorf("detector config: NewConnFloor %v must be >= 0", c.NewConnFloor)
	case d.RateWindow < 0, d.BaselineBucket < 0, d.RelearnAfter < 0, d.ForecastHorizon < 0, d.ForecastWindow < 0,
		d.StormQuiet < 0, d.CalmQuiet < 0, d.SurgeQuiet < 0, d.MaxGap < 0, d.TrendWindow < 0:
		return fmt.Errorf("detector config: durations must not be negative")
	case d.BaselineBuckets < 1 || d.BaselineMinBuckets < 1 || d.BaselineMinBuckets > d.BaselineBuckets:
		return fmt.Errorf("detector config: need 1 <= BaselineMinBuckets (%d) <= BaselineBuckets (%d)", d.BaselineMinBuckets, d.BaselineBuckets)
	case d.AcceptHighOccupancy <= 0 || d.AcceptHighOccupancy > 1:
		return fmt.Errorf("detector config: AcceptHighOccupancy %v must be in (0,1]", c.AcceptHighOccupancy)
	case d.HeadroomOccupancy <= 0 || d.HeadroomOccupancy > 1:
		return fmt.Errorf("detector config: HeadroomOccupancy %v must be in (0,1]", c.HeadroomOccupancy)
	case d.ChurnFraction <= 0 || d.ChurnFraction > 1:
		return fmt.Errorf("detector config: ChurnFraction %v must be in (0,1]", c.ChurnFraction)
	case d.ForecastMinOccupancy < 0 || d.ForecastMinOccupancy > 1:
		return fmt.Errorf("detector config: ForecastMinOccupancy %v must be in [0,1]", c.ForecastMinOccupancy)
	case d.PingFactor < 1 || d.PingFloorMS < 0 || d.PingSustain < 1:
		return fmt.Errorf("detector config: need PingFactor >= 1, PingFloorMS >= 0, PingSustain >= 1")
	case d.AcceptWaitFactor < 1 || d.AcceptWaitFloorMS < 0 || d.AcceptWaitSustain < 1:
		return fmt.Errorf("detector config: need AcceptWaitFactor >= 1, AcceptWaitFloorMS >= 0, AcceptWaitSustain >= 1")
	case d.InsertFailedMinRate < 0:
		return fmt.Errorf("detector config: InsertFailedMinRate %v must be >= 0", c.InsertFailedMinRate)
	}
	return nil
}
