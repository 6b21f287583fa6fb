package lab

import (
	"math"
	"testing"
	"time"
)

func TestGoodputOf(t *testing.T) {
	var pts []Point
	// Ten buckets before the disruption at 100 oks each (1000/s).
	for i := -10; i < 0; i++ {
		pts = append(pts, Point{TMS: int64(i)*100 - 50, OKCommands: 100})
	}
	// The bucket the disruption fell in counts on neither side.
	pts = append(pts, Point{TMS: -50, OKCommands: 7})
	// After: 5 empty buckets, 20 at half the rate, 10 at the full rate.
	for i := 0; i < 35; i++ {
		ok := int64(0)
		switch {
		case i >= 25:
			ok = 100
		case i >= 5:
			ok = 50
		}
		pts = append(pts, Point{TMS: int64(i)*100 + 50, OKCommands: ok})
	}
	g := goodputOf(pts, time.Second, 0)
	if g.before == nil || *g.before != 1000 {
		t.Fatalf("before = %v, want 1000/s", g.before)
	}
	if g.minRatio == nil || *g.minRatio != 0.25 { // 5 empty + 5 half
		t.Errorf("min ratio = %v, want 0.25", *g.minRatio)
	}
	if g.endRatio == nil || *g.endRatio != 1 {
		t.Errorf("end ratio = %v, want 1", *g.endRatio)
	}
	// The first one-second window at or above 80%: buckets 21..30 after
	// t0 (4×50 + 6×100 = 800 of 1000), which ends at 30×100+50+100 ms.
	if g.back80 == nil || *g.back80 != 30*100+50+100 {
		t.Errorf("back at 80%% = %v, want %d ms", g.back80, 30*100+50+100)
	}
	// A disruption that started 300 ms before t0 was marked: the
	// buckets after it are not "before".
	pts[8].OKCommands, pts[9].OKCommands = 0, 0
	if g := goodputOf(pts, time.Second, -300); g.before == nil || math.Abs(*g.before-1000) > 1e-6 {
		t.Errorf("before with the disruption started at -300ms = %v, want 1000/s (only buckets ending by then)", *g.before)
	}
	if g := goodputOf(pts[11:], time.Second, 0); g.before != nil || g.minRatio != nil {
		t.Errorf("no buckets before the disruption: %+v", g)
	}
}
