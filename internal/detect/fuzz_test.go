package detect

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// byteSrc hands out fuzz bytes; exhausted means zeros.
type byteSrc struct{ b []byte }

func (r *byteSrc) u8() uint8 {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *byteSrc) u16() uint16 { return uint16(r.u8())<<8 | uint16(r.u8()) }

// ptr returns nil (1 in 8) or a value that is small, repeated, or huge.
func (r *byteSrc) ptr(prev uint64) *uint64 {
	switch c := r.u8(); c % 8 {
	case 0:
		return nil
	case 1:
		return sample.U64(math.MaxUint64 - uint64(r.u8()))
	case 2:
		return sample.U64(uint64(r.u16())) // may be a reset
	default:
		return sample.U64(prev + uint64(r.u16())*uint64(c%5))
	}
}

// decodeStream turns fuzz bytes into samples with nil fields, resets,
// time jumps (backwards too) and extreme values.
func decodeStream(data []byte) []*sample.Sample {
	r := &byteSrc{b: data}
	t := time.Unix(1_700_000_000, 0)
	var out []*sample.Sample
	var c [24]uint64
	next := func(i int) *uint64 {
		p := r.ptr(c[i])
		if p != nil {
			c[i] = *p
		}
		return p
	}
	for len(r.b) > 0 && len(out) < 400 {
		flags := r.u8()
		t = t.Add(time.Duration(int16(r.u16())) * time.Millisecond)
		s := &sample.Sample{Time: t, Target: "fuzz:6379"}
		if flags&1 != 0 {
			s.Listen = &sample.Listen{Depth: next(0), DepthMax: next(1), Limit: next(2), OverflowsPort: next(23)}
			s.SynRecv = next(3)
		}
		if flags&2 != 0 {
			s.TCP = &sample.TCP{PassiveOpens: next(4), ListenOverflows: next(5), ListenDrops: next(6),
				ReqQFullDrop: next(7), ReqQFullDoCookies: next(8), SynRetrans: next(9), AttemptFails: next(10)}
		}
		if flags&4 != 0 {
			s.Conntrack = &sample.Conntrack{Count: next(11), Max: next(12), Drop: next(13), EarlyDrop: next(14), InsertFailed: next(15)}
		}
		if flags&8 != 0 {
			var ping *float64
			switch r.u8() % 4 {
			case 1:
				ping = sample.F64(float64(r.u16()) / 10)
			case 2:
				ping = sample.F64(math.NaN())
			case 3:
				ping = sample.F64(math.Inf(int(r.u8()%2)*2 - 1))
			}
			s.Valkey = &sample.Valkey{ConnectedClients: next(16), MaxClients: next(17), TotalConnectionsReceived: next(18),
				RejectedConnections: next(19), PingMS: ping}
		}
		if flags&16 != 0 {
			s.NIC = &sample.NIC{ConntrackAllowanceExceeded: next(20), PPSAllowanceExceeded: next(21)}
		}
		if flags&64 != 0 {
			n := int(r.u8() % 3)
			s.NetNSOtherListeners = &n
			s.Mitigation = &sample.Mitigation{Armed: 1, Dropped: next(22)}
		}
		if flags&128 != 0 {
			// The eBPF accept wait: values, NaN and ±Inf p99s.
			var p99 *float64
			switch r.u8() % 4 {
			case 1:
				p99 = sample.F64(float64(r.u16()) / 10)
			case 2:
				p99 = sample.F64(math.NaN())
			case 3:
				p99 = sample.F64(math.Inf(int(r.u8()%2)*2 - 1))
			}
			s.AcceptWaitMS = &sample.AcceptWait{P99: p99}
		}
		if flags&32 != 0 {
			s = nil
		}
		out = append(out, s)
	}
	return out
}

func FuzzObserve(f *testing.F) {
	seed := func(n int, step func(i int) []byte) []byte {
		var b []byte
		for i := 0; i < n; i++ {
			b = append(b, step(i)...)
		}
		return b
	}
	f.Add([]byte{})
	f.Add(seed(50, func(i int) []byte { return []byte{0x1f, 0x03, 0xe8, 3, 1, 0, 4, 4, 4, 4, 4, 4, 4} }))
	f.Add(seed(80, func(i int) []byte { return []byte{0x0f, 0x00, 0xfa, byte(i), 2, 0, byte(i), 4, 1, 0xff} }))
	f.Add(seed(30, func(i int) []byte { return []byte{0x2f, 0xff, 0x00, 1, 2, 3} })) // time backwards + nil samples
	f.Add(binary.BigEndian.AppendUint64(nil, 0xdeadbeefcafef00d))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, cfg := range []Config{{}, {StormQuiet: time.Millisecond, CalmQuiet: time.Millisecond, SurgeQuiet: time.Millisecond, BaselineBucket: time.Millisecond, BaselineMinBuckets: 1, RelearnAfter: time.Millisecond}} {
			d := New(cfg)
			prev := Calm
			for i, s := range decodeStream(data) {
				st, evs := d.Observe(s)
				if !st.Valid() {
					t.Fatalf("sample %d: invalid state %d", i, st)
				}
				if len(evs) > 1 {
					t.Fatalf("sample %d: %d events", i, len(evs))
				}
				for _, e := range evs {
					if e.From != prev || e.To != st || e.From == e.To || e.Type != "state" || e.Verdict == "" || e.Reason == "" {
						t.Fatalf("sample %d: bad event %+v (prev %v, state %v)", i, e, prev, st)
					}
					if _, err := json.Marshal(e); err != nil {
						t.Fatalf("sample %d: event does not encode: %v", i, err)
					}
				}
				if len(evs) == 0 && st != prev {
					t.Fatalf("sample %d: state %v → %v without an event", i, prev, st)
				}
				if _, err := json.Marshal(d.View()); err != nil {
					t.Fatalf("sample %d: view does not encode: %v", i, err)
				}
				prev = st
			}
		}
	})
}

func BenchmarkObserve(b *testing.B) {
	bl := newBuilder(250 * time.Millisecond)
	bl.noConntrack, bl.ctMax, bl.ctCount = false, 262144, 1000
	samples := make([]*sample.Sample, 4096)
	for i := range samples {
		bl.depthMax = uint64(i % 20)
		bl.ctCount += uint64(i % 7)
		samples[i] = bl.tick(150+float64(i%50), 0)
	}
	d := New(Config{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i > 0 && i%len(samples) == 0 {
			// Keep time moving forward across laps.
			for _, s := range samples {
				s.Time = s.Time.Add(time.Duration(len(samples)) * bl.dt)
			}
		}
		d.Observe(samples[i%len(samples)])
	}
}

func BenchmarkObserveStorm(b *testing.B) {
	bl := newBuilder(250 * time.Millisecond)
	d := New(Config{})
	for i := 0; i < 1000; i++ {
		d.Observe(bl.tick(50, 0))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		bl.depthMax = bl.limit
		if i%50 < 25 {
			bl.depthMax = 0
			d.Observe(bl.tick(50, 0))
			continue
		}
		d.Observe(bl.tick(5000, 1000))
	}
}
