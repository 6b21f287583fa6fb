package detect

import (
	"math"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// carrier imitates sample.Sampler's slow clocks: between readings of a
// slow source a sample carries its latest part, with its age in
// SourceAgeMS.
type carrier struct {
	period map[string]time.Duration
	last   map[string]*sample.Sample
}

func newCarrier(period map[string]time.Duration) *carrier {
	return &carrier{period: period, last: map[string]*sample.Sample{}}
}

func (c *carrier) apply(s *sample.Sample) *sample.Sample {
	s.SourceAgeMS = map[string]float64{}
	for name, p := range c.period {
		prev, ok := c.last[name]
		if !ok || s.Time.Sub(prev.Time) >= p {
			c.last[name] = s
			continue
		}
		s.SourceAgeMS[name] = float64(s.Time.Sub(prev.Time)) / float64(time.Millisecond)
		switch name {
		case "valkey":
			s.Valkey = prev.Valkey
		case "conntrack":
			s.Conntrack = prev.Conntrack
		case "nic":
			s.NIC = prev.NIC
		}
	}
	return s
}

// TestCarriedReadings: at a 10 ms interval with Valkey read every 100 ms
// and conntrack and the NIC every 500 ms, the carried readings are neither
// a zero rate nor a burst: the calm stream stays calm with the true rates,
// and conntrack drops seen at the next conntrack reading make a storm
// whose rate is over the time between the two readings, not one interval.
func TestCarriedReadings(t *testing.T) {
	b := newBuilder(10 * time.Millisecond)
	b.noConntrack, b.ctMax, b.ctCount = false, 65536, 1000
	c := newCarrier(map[string]time.Duration{"valkey": 100 * time.Millisecond, "conntrack": 500 * time.Millisecond, "nic": 500 * time.Millisecond})
	d := New(Config{})
	for i := 0; i < 6000; i++ { // one minute
		if st, evs := d.Observe(c.apply(b.tick(20, 0))); st != Calm || len(evs) != 0 {
			t.Fatalf("tick %d: state %v, events %+v; want calm", i, st, evs)
		}
		if r := d.View().Rates.ValkeyConnections; i > 100 && (r == nil || math.Abs(*r-20) > 2) {
			t.Fatalf("tick %d: valkey connection rate %v, want ~20/s throughout", i, fmtPtr(r))
		}
	}
	// 400 conntrack drops within the next half second: storm at the
	// first sample that reads conntrack again, and not before.
	b.ctCount = b.ctMax
	b.ctDrop += 400
	var stormAt int
	for i := 1; i <= 50 && stormAt == 0; i++ {
		s := c.apply(b.tick(20, 0))
		_, carried := s.SourceAgeMS["conntrack"]
		st, _ := d.Observe(s)
		switch {
		case st == Storm && carried:
			t.Fatalf("tick %d: storm on a carried conntrack reading", i)
		case st == Storm:
			stormAt = i
		case !carried:
			t.Fatalf("tick %d: fresh conntrack reading with 400 drops, state %v", i, st)
		}
	}
	if stormAt == 0 {
		t.Fatal("no storm within 500 ms of the drops")
	}
	sig, ok := hasSignal(d.View(), "conntrack_drop")
	if !ok {
		t.Fatalf("signals %+v, want conntrack_drop", d.View().Signals)
	}
	// 400 drops between two readings 500 ms apart: 800/s.
	if math.Abs(sig.Value-800) > 1 {
		t.Errorf("conntrack_drop value %v/s, want 800 (400 over the 500 ms between readings)", sig.Value)
	}
}

func fmtPtr(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}
