package lab

import (
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestTimeToRecover(t *testing.T) {
	tests := []struct {
		name    string
		times   []time.Duration
		clients int
		want    time.Duration
		ok      bool
	}{
		{"all recovered: the 99th of 100", append(ms(make([]int, 98)...), ms(500, 9000)...), 100, 500 * time.Millisecond, true},
		{"unsorted input", ms(300, 100, 200), 3, 300 * time.Millisecond, true},
		{"one short of 99%", ms(make([]int, 98)...), 100, 0, false},
		{"single client", ms(42), 1, 42 * time.Millisecond, true},
		{"nobody", nil, 5, 0, false},
		{"1000 clients need 990", ms(make([]int, 990)...), 1000, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := timeToRecover(tt.times, tt.clients, RecoverQuantile)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("got %s %v, want %s %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	times := ms(50, 10, 40, 20, 30)
	for _, tt := range []struct {
		q    float64
		want int
	}{{0.5, 30}, {1, 50}, {0, 10}, {0.2, 10}, {0.21, 20}} {
		if got := quantile(times, tt.q); got != time.Duration(tt.want)*time.Millisecond {
			t.Errorf("q%.2f = %s, want %dms", tt.q, got, tt.want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("quantile of nothing should be 0")
	}
}

func TestPeakRates(t *testing.T) {
	tests := []struct {
		name           string
		tl             []int64
		bucket, persec int64
	}{
		{"empty", nil, 0, 0},
		{"one burst", []int64{0, 30, 0}, 300, 30},
		{"window slides", []int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 5, 0}, 50, 14},
		{"steady", []int64{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}, 20, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, s := peakRates(tt.tl)
			if b != tt.bucket || s != tt.persec {
				t.Fatalf("got %d/%d, want %d/%d", b, s, tt.bucket, tt.persec)
			}
		})
	}
}

func TestRecorderRecovery(t *testing.T) {
	r := newRecorder(3, time.Second)
	before := time.Now()
	r.pingOK(0, before) // warm-up
	if r.warmCount.Load() != 1 || r.recovered.Load() != 0 {
		t.Fatalf("warm %d recovered %d", r.warmCount.Load(), r.recovered.Load())
	}
	r.disrupted()
	r.pingOK(1, before) // sent before the disruption: does not count
	if r.recovered.Load() != 0 {
		t.Fatal("a PING sent before the disruption counted as recovery")
	}
	r.pingOK(1, time.Now())
	r.pingOK(1, time.Now()) // only the first counts
	if r.recovered.Load() != 1 || len(r.recoveryTimes()) != 1 {
		t.Fatalf("recovered %d, times %v", r.recovered.Load(), r.recoveryTimes())
	}
	r.dial()
	r.dial()
	if got := r.timelineFrom(0, r.since(time.Now())); sum(got) != 2 {
		t.Fatalf("timeline %v, want 2 dials", got)
	}
}

func sum(v []int64) (s int64) {
	for _, x := range v {
		s += x
	}
	return s
}

// TestAddDialsOver: dials known only to fall between two samples are
// spread over the buckets by each bucket's share of the interval, and
// every one of them is counted once.
func TestAddDialsOver(t *testing.T) {
	d := func(v int) time.Duration { return time.Duration(v) * time.Millisecond }
	tests := []struct {
		name     string
		n        int64
		from, to time.Duration // since the recorder's start
		want     []int64       // buckets 0..len-1
	}{
		{"one bucket", 7, d(110), d(190), []int64{0, 7, 0}},
		{"three whole buckets", 30, d(0), d(300), []int64{10, 10, 10, 0}},
		{"late sample: 700ms lumped", 700, d(100), d(800), []int64{0, 100, 100, 100, 100, 100, 100, 100, 0}},
		{"uneven edges", 10, d(50), d(250), []int64{3, 5, 2}},
		{"empty interval: the current bucket", 4, d(120), d(120), []int64{0, 4}},
		{"past the horizon: the last bucket", 6, d(900), d(5000), []int64{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6}},
		{"nothing", 0, d(0), d(300), []int64{0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecorder(1, time.Second) // 11 buckets
			r.addDialsOver(tt.n, r.start.Add(tt.from), r.start.Add(tt.to))
			var sum int64
			for i := range r.timeline {
				v := r.timeline[i].Load()
				sum += v
				if i < len(tt.want) && v != tt.want[i] {
					t.Errorf("bucket %d = %d, want %d (timeline %v)", i, v, tt.want[i], r.timelineFrom(0, int64(time.Hour)))
				}
			}
			if sum != tt.n || r.dials.Load() != tt.n {
				t.Errorf("timeline holds %d, dials %d; want %d", sum, r.dials.Load(), tt.n)
			}
		})
	}
}

// TestRecoveredWithin: a client that recovered after the observation
// ended (the run waited for a restart whose --down outlasted --duration)
// does not count, so recovered and time_to_recover_ms mean "within
// --duration" as the contract says.
func TestRecoveredWithin(t *testing.T) {
	times := ms(100, 2000, 6020, 1999)
	got := recoveredWithin(times, 2*time.Second)
	if len(got) != 3 {
		t.Fatalf("kept %v, want the three within 2s", got)
	}
	if _, ok := timeToRecover(got, 4, RecoverQuantile); ok {
		t.Fatal("3 of 4 clients within --duration counted as recovered")
	}
	if len(times) != 4 || times[2] != 6020*time.Millisecond {
		t.Fatalf("input changed: %v", times)
	}
}

// TestPointsBucketStarts: timeline buckets are Bucket apart on both sides
// of t0 and a bucket that starts before t0 has a negative t_ms.
func TestPointsBucketStarts(t *testing.T) {
	r := newRecorder(1, 2*time.Second)
	t0 := int64(1010400 * time.Microsecond) // 1010.4 ms after the start
	pts := r.points(0, int64(1500*time.Millisecond), t0)
	for i := 1; i < len(pts); i++ {
		if d := pts[i].TMS - pts[i-1].TMS; d != Bucket.Milliseconds() {
			t.Fatalf("t_ms %d then %d: step %d, want %d", pts[i-1].TMS, pts[i].TMS, d, Bucket.Milliseconds())
		}
	}
	// The bucket holding t0 starts at 1000 ms, 10.4 ms before it.
	if got := pts[10].TMS; got != -11 {
		t.Fatalf("bucket of t0 t_ms = %d, want -11 (floor of -10.4)", got)
	}
	if got := floorMS(-400 * int64(time.Microsecond)); got != -1 {
		t.Fatalf("floorMS(-0.4ms) = %d, want -1", got)
	}
}
