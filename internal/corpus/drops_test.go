package corpus

import (
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/replay"
	"github.com/stormguard/stormguard/internal/sample"
)

func TestDrops(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	mk := func(i int, overflows, rejected *uint64) replay.Record {
		s := &sample.Sample{Time: t0.Add(time.Duration(i) * time.Second), Target: "a:1",
			TCP: &sample.TCP{ListenOverflows: overflows}, Valkey: &sample.Valkey{RejectedConnections: rejected}}
		return replay.Record{Target: "a:1", Time: s.Time, Sample: s}
	}
	u := sample.U64
	for _, tc := range []struct {
		name    string
		recs    []replay.Record
		first   int // index of the first-drop sample, -1 none
		counter string
		total   map[string]uint64
	}{
		{"none", []replay.Record{mk(0, u(5), u(0)), mk(1, u(5), u(0))}, -1, "", map[string]uint64{}},
		{"first reading is not a drop", []replay.Record{mk(0, u(500), u(7)), mk(1, u(500), u(7))}, -1, "", map[string]uint64{}},
		{"overflow", []replay.Record{mk(0, u(5), u(0)), mk(1, u(5), u(0)), mk(2, u(9), u(0))}, 2, "tcp.listen_overflows",
			map[string]uint64{"tcp.listen_overflows": 4}},
		// A restarted Valkey resets its counter: that is not a drop, and
		// counting resumes from the new reading.
		{"reset then rejections", []replay.Record{mk(0, u(5), u(100)), mk(1, u(5), u(0)), mk(2, u(5), u(3))}, 2,
			"valkey.rejected_connections", map[string]uint64{"valkey.rejected_connections": 3}},
		{"missing counter keeps its reading", []replay.Record{mk(0, u(5), nil), mk(1, nil, nil), mk(2, u(6), nil)}, 2,
			"tcp.listen_overflows", map[string]uint64{"tcp.listen_overflows": 1}},
		{"restart records are skipped", []replay.Record{mk(0, u(1), nil), {Target: "a:1", Time: t0, Restart: true}, mk(1, u(2), nil)}, 2,
			"tcp.listen_overflows", map[string]uint64{"tcp.listen_overflows": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, after, counter, total := Drops(&replay.Recording{Records: tc.recs})
			if tc.first < 0 {
				if first != nil || len(total) != 0 {
					t.Fatalf("first = %v, total = %v; want none", first, total)
				}
				return
			}
			want := tc.recs[tc.first].Time
			if first == nil || !first.Equal(want) || counter != tc.counter || !after.Before(want) {
				t.Fatalf("first = %v after %v (%s), want %v (%s)", first, after, counter, want, tc.counter)
			}
			if len(total) != len(tc.total) {
				t.Fatalf("total = %v, want %v", total, tc.total)
			}
			for k, v := range tc.total {
				if total[k] != v {
					t.Fatalf("total = %v, want %v", total, tc.total)
				}
			}
		})
	}
}

func TestSlowBuild(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	rec := func(ms []int, depth []uint64) *replay.Recording {
		r := &replay.Recording{}
		for i := range ms {
			s := &sample.Sample{Time: t0.Add(time.Duration(ms[i]) * time.Millisecond), Target: "a:1",
				Listen: &sample.Listen{DepthMax: sample.U64(depth[i]), Limit: sample.U64(32)}}
			r.Records = append(r.Records, replay.Record{Target: "a:1", Time: s.Time, Sample: s})
		}
		return r
	}
	drop := t0.Add(3 * time.Second)
	for _, tc := range []struct {
		name  string
		ms    []int
		depth []uint64
		want  bool
	}{
		{"seen filling over 1.2 s", []int{0, 500, 1000, 1500, 2200}, []uint64{0, 8, 14, 22, 30}, true},
		// One sample at 59 %, then a sampling gap until the drop: not seen filling.
		{"one sample then a gap", []int{0, 600}, []uint64{0, 19}, false},
		{"filled within 0.5 s", []int{0, 2400, 2900}, []uint64{0, 10, 30}, false},
		{"a dip resets it", []int{0, 500, 1200, 1700, 2300}, []uint64{10, 12, 2, 20, 30}, false},
		{"samples after the drop do not count", []int{2500, 3000, 4000}, []uint64{20, 32, 32}, false},
	} {
		if got := SlowBuild(rec(tc.ms, tc.depth), drop); got != tc.want {
			t.Errorf("%s: SlowBuild = %v, want %v", tc.name, got, tc.want)
		}
	}
}
