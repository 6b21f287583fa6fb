package detect

import (
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
}

// counterTable is keyed by counterID, so an entry cannot drift from its
// constant; TestCounterTableComplete checks every entry is filled.
var counterTable = [nCounters]counterDef{
	cPassive:        {name: "tcp.passive_opens", read: tcp(func(t *sample.TCP) *uint64 { return t.PassiveOpens }), rate: func(r *Rates) **float64 { return &r.PassiveOpens }},
	cValkeyConns:    {name: "valkey.total_connections_received", read: valkey(func(k *sample.Valkey) *uint64 { return k.TotalConnectionsReceived }), rate: func(r *Rates) **float64 { return &r.ValkeyConnections }},
	cOverflows:      {name: "tcp.listen_overflows", read: tcp(func(t *sample.TCP) *uint64 { return t.ListenOverflows }), rate: func(r *Rates) **float64 { return &r.ListenOverflows }, refusal: true},
	cDrops:          {name: "tcp.listen_drops", read: tcp(func(t *sample.TCP) *uint64 { return t.ListenDrops }), rate: func(r *Rates) **float64 { return &r.ListenDrops }, refusal: true},
	cReqQDrop:       {name: "tcp.reqq_full_drop", read: tcp(func(t *sample.TCP) *uint64 { return t.ReqQFullDrop }), rate: func(r *Rates) **float64 { return &r.ReqQFullDrop }, refusal: true},
	cReqQCookies:    {name: "tcp.reqq_full_do_cookies", read: tcp(func(t *sample.TCP) *uint64 { return t.ReqQFullDoCookies }), rate: func(r *Rates) **float64 { return &r.ReqQFullDoCookies }, refusal: true},
	cSynRetrans:     {name: "tcp.syn_retrans", read: tcp(func(t *sample.TCP) *uint64 { return t.SynRetrans }), rate: func(r *Rates) **float64 { return &r.SynRetrans }},
	cAttemptFails:   {name: "tcp.attempt_fails", read: tcp(func(t *sample.TCP) *uint64 { return t.AttemptFails }), rate: func(r *Rates) **float64 { return &r.AttemptFails }},
	cCtDrop:         {name: "conntrack.drop", read: conntrack(func(c *sample.Conntrack) *uint64 { return c.Drop }), rate: func(r *Rates) **float64 { return &r.ConntrackDrop }, refusal: true},
	cCtEarlyDrop:    {name: "conntrack.early_drop", read: conntrack(func(c *sample.Conntrack) *uint64 { return c.EarlyDrop }), rate: func(r *Rates) **float64 { return &r.ConntrackEarlyDrop }},
	cCtInsertFailed: {name: "conntrack.insert_failed", read: conntrack(func(c *sample.Conntrack) *uint64 { return c.InsertFailed }), rate: func(r *Rates) **float64 { return &r.ConntrackInsertFailed }},
	cNICConntrack:   {name: "nic.conntrack_allowance_exceeded", read: nic(func(n *sample.NIC) *uint64 { return n.ConntrackAllowanceExceeded }), rate: func(r *Rates) **float64 { return &r.NICConntrackAllowance }, refusal: true},
	cNICPPS:         {name: "nic.pps_allowance_exceeded", read: nic(func(n *sample.NIC) *uint64 { return n.PPSAllowanceExceeded }), rate: func(r *Rates) **float64 { return &r.NICPPSAllowance }, refusal: true},
	cMitigationDrops: {name: "mitigation.dropped", read: func(s *sample.Sample) *uint64 {
		if s.Mitigation == nil {
			return nil
		}
		return s.Mitigation.Dropped
	}, rate: func(r *Rates) **float64 { return &r.MitigationDrops }, refusal: true},
	cRejected: {name: "valkey.rejected_connections", read: valkey(func(k *sample.Valkey) *uint64 { return k.RejectedConnections }), rate: func(r *Rates) **float64 { return &r.ValkeyRejectedConnections }, refusal: true},
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
}

// delta is one interval of one counter.
type delta struct {
	n    uint64
	rate float64
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
	return delta{n: n, rate: float64(n) / span.Seconds(), ok: true}, false
}
