package detect

import (
	"math"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// counterID indexes the counter table.
type counterID int

const (
	cPassive counterID = iota
	cValkeyConns
	cOverflows
	cDrops
	cReqQDrop
	cReqQCookies
	cSynRetrans
	cAttemptFails
	cCtDrop
	cCtEarlyDrop
	cCtInsertFailed
	cNICConntrack
	cNICPPS
	cRejected
	cMitigationDrops
	cPortOverflows
	nCounters
)

// counterDef describes one cumulative counter the detector derives a rate
// from: its name (as listed in View.Resets), where it is read in a Sample,
// where its rate goes in View.Rates, and whether it is a drop or refusal
// count (a sample in which none of those could be read is a blind one).
// A new counter is one constant above and one entry in counterTable.
type counterDef struct {
	name    string
	read    func(*sample.Sample) *uint64
	rate    func(*Rates) **float64
	refusal bool
	// source is the sample source that reads the counter ("" for the
	// agent's own): a sample may carry that source's latest reading
	// instead of a fresh one (sample.SourceAgeMS), which is no new
	// interval of the counter.
	source string
}

// counterTable is keyed by counterID, so an entry cannot drift from its
// constant; TestCounterTableComplete checks every entry is filled.
var counterTable = [nCounters]counterDef{
	cPassive:        {name: "tcp.passive_opens", read: tcp(func(t *sample.TCP) *uint64 { return t.PassiveOpens }), rate: func(r *Rates) **float64 { return &r.PassiveOpens }, source: "tcp"},
	cValkeyConns:    {name: "valkey.total_connections_received", read: valkey(func(k *sample.Valkey) *uint64 { return k.TotalConnectionsReceived }), rate: func(r *Rates) **float64 { return &r.ValkeyConnections }, source: "valkey"},
	cOverflows:      {name: "tcp.listen_overflows", read: tcp(func(t *sample.TCP) *uint64 { return t.ListenOverflows }), rate: func(r *Rates) **float64 { return &r.ListenOverflows }, refusal: true, source: "tcp"},
	cDrops:          {name: "tcp.listen_drops", read: tcp(func(t *sample.TCP) *uint64 { return t.ListenDrops }), rate: func(r *Rates) **float64 { return &r.ListenDrops }, refusal: true, source: "tcp"},
	cReqQDrop:       {name: "tcp.reqq_full_drop", read: tcp(func(t *sample.TCP) *uint64 { return t.ReqQFullDrop }), rate: func(r *Rates) **float64 { return &r.ReqQFullDrop }, refusal: true, source: "tcp"},
	cReqQCookies:    {name: "tcp.reqq_full_do_cookies", read: tcp(func(t *sample.TCP) *uint64 { return t.ReqQFullDoCookies }), rate: func(r *Rates) **float64 { return &r.ReqQFullDoCookies }, refusal: true, source: "tcp"},
	cSynRetrans:     {name: "tcp.syn_retrans", read: tcp(func(t *sample.TCP) *uint64 { return t.SynRetrans }), rate: func(r *Rates) **float64 { return &r.SynRetrans }, source: "tcp"},
	cAttemptFails:   {name: "tcp.attempt_fails", read: tcp(func(t *sample.TCP) *uint64 { return t.AttemptFails }), rate: func(r *Rates) **float64 { return &r.AttemptFails }, source: "tcp"},
	cCtDrop:         {name: "conntrack.drop", read: conntrack(func(c *sample.Conntrack) *uint64 { return c.Drop }), rate: func(r *Rates) **float64 { return &r.ConntrackDrop }, refusal: true, source: "conntrack"},
	cCtEarlyDrop:    {name: "conntrack.early_drop", read: conntrack(func(c *sample.Conntrack) *uint64 { return c.EarlyDrop }), rate: func(r *Rates) **float64 { return &r.ConntrackEarlyDrop }, source: "conntrack"},
	cCtInsertFailed: {name: "conntrack.insert_failed", read: conntrack(func(c *sample.Conntrack) *uint64 { return c.InsertFailed }), rate: func(r *Rates) **float64 { return &r.ConntrackInsertFailed }, source: "conntrack"},
	cNICConntrack:   {name: "nic.conntrack_allowance_exceeded", read: nic(func(n *sample.NIC) *uint64 { return n.ConntrackAllowanceExceeded }), rate: func(r *Rates) **float64 { return &r.NICConntrackAllowance }, refusal: true, source: "nic"},
	cNICPPS:         {name: "nic.pps_allowance_exceeded", read: nic(func(n *sample.NIC) *uint64 { return n.PPSAllowanceExceeded }), rate: func(r *Rates) **float64 { return &r.NICPPSAllowance }, refusal: true, source: "nic"},
	cMitigationDrops: {name: "mitigation.dropped", read: func(s *sample.Sample) *uint64 {
		if s.Mitigation == nil {
			return nil
		}
		return s.Mitigation.Dropped
	}, rate: func(r *Rates) **float64 { return &r.MitigationDrops }, refusal: true},
	// listen.overflows_port is the port's listening sockets' own drop
	// counter (eBPF): per port, so no Principle 0 question. It sums the
	// live listeners' counts, so a listener recreated by a restart starts
	// again from 0: a fall is a reset like any other, while a reading
	// after a gap (no listener learned yet) is compared with the last one
	// before it, which counts the new socket's drops when the old one had
	// none.
	cPortOverflows: {name: "listen.overflows_port", read: func(s *sample.Sample) *uint64 {
		if s.Listen == nil {
			return nil
		}
		return s.Listen.OverflowsPort
	}, rate: func(r *Rates) **float64 { return &r.PortOverflows }, refusal: true, source: "ebpf"},
	cRejected: {name: "valkey.rejected_connections", read: valkey(func(k *sample.Valkey) *uint64 { return k.RejectedConnections }), rate: func(r *Rates) **float64 { return &r.ValkeyRejectedConnections }, refusal: true, source: "valkey"},
}

func tcp(f func(*sample.TCP) *uint64) func(*sample.Sample) *uint64 {
	return func(s *sample.Sample) *uint64 {
		if s.TCP == nil {
			return nil
		}
		return f(s.TCP)
	}
}

func valkey(f func(*sample.Valkey) *uint64) func(*sample.Sample) *uint64 {
	return func(s *sample.Sample) *uint64 {
		if s.Valkey == nil {
			return nil
		}
		return f(s.Valkey)
	}
}

func conntrack(f func(*sample.Conntrack) *uint64) func(*sample.Sample) *uint64 {
	return func(s *sample.Sample) *uint64 {
		if s.Conntrack == nil {
			return nil
		}
		return f(s.Conntrack)
	}
}

func nic(f func(*sample.NIC) *uint64) func(*sample.Sample) *uint64 {
	return func(s *sample.Sample) *uint64 {
		if s.NIC == nil {
			return nil
		}
		return f(s.NIC)
	}
}

// counter remembers the last reading of one cumulative counter.
type counter struct {
	v  uint64
	t  time.Time
	ok bool
	// rate is the last interval's rate (valid when hasRate), shown again
	// while samples carry the same reading.
	rate    float64
	hasRate bool
}

// delta is one interval of one counter.
type delta struct {
	n    uint64
	rate float64
	// span is the interval's length: the time between the two readings.
	span time.Duration
	ok   bool
}

// step consumes a reading. A nil reading keeps the previous one, so a source
// that misses one sample yields an average over the longer span next time
// (up to maxGap). A lower reading is a reset: no rate this interval.
func (c *counter) step(cur *uint64, t time.Time, maxGap time.Duration) (d delta, reset bool) {
	if cur == nil {
		return delta{}, false
	}
	prev, prevT, had := c.v, c.t, c.ok
	c.v, c.t, c.ok = *cur, t, true
	c.hasRate = false
	if !had {
		return delta{}, false
	}
	span := t.Sub(prevT)
	if span <= 0 || span > maxGap {
		return delta{}, false
	}
	if *cur < prev {
		return delta{}, true
	}
	n := *cur - prev
	c.rate, c.hasRate = float64(n)/span.Seconds(), true
	return delta{n: n, rate: c.rate, span: span, ok: true}, false
}

// carried consumes a reading the sample carries from an earlier one
// (sample.SourceAgeMS): no new interval, so no delta for the rules; the
// last rate stays what the view shows. A carried reading the counter has
// not seen (a recording that starts between readings) is taken as read
// at its own time.
func (c *counter) carried(cur *uint64, at time.Time, maxGap time.Duration) (delta, bool) {
	if cur == nil || !c.ok {
		return c.step(cur, at, maxGap)
	}
	return delta{}, false
}

// carriedAt reports whether s carries an earlier reading of source and the
// time it was read.
func carriedAt(s *sample.Sample, source string) (time.Time, bool) {
	if source == "" {
		return s.Time, false
	}
	age, ok := s.SourceAgeMS[source]
	if !ok {
		return s.Time, false
	}
	return s.Time.Add(-time.Duration(math.Round(age * float64(time.Millisecond)))), true
}
