package listentrace

import (
	"encoding/binary"
	"math"
	"testing"
	"time"
)

func TestBucketBoundsContainTheirValues(t *testing.T) {
	for _, us := range []uint64{0, 1, 15, 16, 17, 31, 32, 33, 1000, 99999, 1 << 20, 1<<28 - 1, 1 << 28, 1 << 40, math.MaxUint64} {
		b := bucketOf(us)
		if b < 0 || b >= NBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of range", us, b)
		}
		low, high := BucketBounds(b)
		if float64(us) < low || float64(us) >= high {
			t.Errorf("bucketOf(%d) = %d with bounds [%v, %v)", us, b, low, high)
		}
	}
	for i := 1; i < NBuckets; i++ {
		_, prevHigh := BucketBounds(i - 1)
		low, high := BucketBounds(i)
		if low != prevHigh || high <= low {
			t.Fatalf("bucket %d [%v,%v) does not follow [.., %v)", i, low, high, prevHigh)
		}
		if i >= sub && !math.IsInf(high, 1) && (high-low)/low > 1.0/sub+1e-9 {
			t.Fatalf("bucket %d is %.1f%% wide", i, 100*(high-low)/low)
		}
	}
}

func TestQuantile(t *testing.T) {
	at := func(us ...uint64) Counters {
		var c Counters
		for _, v := range us {
			c.Hist[bucketOf(v)]++
		}
		return c
	}
	tests := []struct {
		name    string
		c       Counters
		q       float64
		want    time.Duration
		tol     float64
		wantOK  bool
		maxWait time.Duration
	}{
		{name: "empty", c: Counters{}, q: 0.5, wantOK: false},
		{name: "one value", c: at(500000), q: 0.99, want: 500 * time.Millisecond, tol: 0.0625, wantOK: true},
		{name: "median of spread", c: at(1000, 2000, 3000, 4000, 5000), q: 0.5, want: 3 * time.Millisecond, tol: 0.0625, wantOK: true},
		{name: "p99 of 100", c: at(append(make([]uint64, 98), 700000, 700000)...), q: 0.99, want: 700 * time.Millisecond, tol: 0.0625, wantOK: true},
		{name: "capped by max", c: at(1000000), q: 1, want: 1010 * time.Millisecond, maxWait: 1010 * time.Millisecond, wantOK: true},
		{name: "bad q", c: at(1), q: 1.5, wantOK: false},
		{name: "NaN q", c: at(1), q: math.NaN(), wantOK: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.MaxWait = tc.maxWait
			got, ok := Quantile(tc.c, tc.q)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tc.wantOK)
			}
			if !ok {
				return
			}
			if tc.maxWait > 0 && got > tc.maxWait {
				t.Fatalf("q%v = %v above max %v", tc.q, got, tc.maxWait)
			}
			if d := math.Abs(float64(got-tc.want)) / float64(tc.want); d > tc.tol+1e-9 {
				t.Fatalf("q%v = %v, want %v within %.1f%%", tc.q, got, tc.want, 100*tc.tol)
			}
		})
	}
}

func TestDelta(t *testing.T) {
	prev := Counters{SYNs: 10, Drops: 2, Accepts: 5, WaitSumUS: 100, Established: 40, SynRecv: 3}
	prev.Hist[3] = 4
	cur := Counters{SYNs: 15, Drops: 2, Accepts: 9, WaitSumUS: 180, MaxWait: time.Second, Established: 25, SynRecv: 0}
	cur.Hist[3] = 6
	d := Delta(prev, cur)
	// Established and SynRecv are gauges: the current values.
	if d.SYNs != 5 || d.Drops != 0 || d.Accepts != 4 || d.WaitSumUS != 80 || d.Hist[3] != 2 || d.MaxWait != time.Second || d.Established != 25 || d.SynRecv != 0 {
		t.Fatalf("delta = %+v", d)
	}
	// Counters that went backwards (programs reloaded) restart.
	if d := Delta(cur, prev); d.SYNs != 10 || d.Hist[3] != 4 {
		t.Fatalf("reset delta = %+v", d)
	}
}

func TestCumulative(t *testing.T) {
	var c Counters
	c.Hist[bucketOf(10)] = 1    // 10 us
	c.Hist[bucketOf(5000)] = 2  // 5 ms
	c.Hist[bucketOf(1<<30)] = 3 // beyond every bound
	got := Cumulative(c)
	want := []uint64{1, 1, 1, 1, 3, 3, 3, 3, 3, 3}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("cumulative = %v, want %v", got, want)
		}
	}
}

func TestDecodeEvent(t *testing.T) {
	b := make([]byte, eventSize)
	binary.LittleEndian.PutUint64(b, 12345)
	binary.LittleEndian.PutUint32(b[8:], 0)
	binary.LittleEndian.PutUint32(b[12:], 1)
	e, err := decodeEvent(b)
	if err != nil || e.KernelNS != 12345 || e.Kind != 1 {
		t.Fatalf("decode = %+v, %v", e, err)
	}
	if _, err := decodeEvent(b[:eventSize-1]); err == nil {
		t.Fatal("a short record decoded")
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(make([]byte, eventSize))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEvent(b)
		if err == nil && len(b) < eventSize {
			t.Fatalf("decoded %d bytes into %+v", len(b), e)
		}
	})
}

// FuzzQuantile feeds arbitrary histograms: a quantile is always inside the
// bucket range it reports and never above the known maximum.
func FuzzQuantile(f *testing.F) {
	f.Add([]byte{1, 0, 5, 200, 3}, 0.5, int64(0))
	f.Add([]byte{255, 255}, 0.99, int64(time.Second))
	f.Fuzz(func(t *testing.T, raw []byte, q float64, maxNS int64) {
		var c Counters
		for i := 0; i+1 < len(raw); i += 2 {
			c.Hist[int(raw[i])*NBuckets/256] += uint64(raw[i+1])
		}
		if maxNS > 0 {
			c.MaxWait = time.Duration(maxNS)
		}
		d, ok := Quantile(c, q)
		if !ok {
			return
		}
		if d < 0 || (c.MaxWait > 0 && d > c.MaxWait) {
			t.Fatalf("quantile %v out of range (max %v)", d, c.MaxWait)
		}
	})
}
