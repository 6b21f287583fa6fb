package simulate

import (
	"errors"
	"testing"
	"time"
)

// TestBucketPhase: a lab run's bucket grid is read off its timeline
// (the first point's t_ms modulo 100; a bucket starting at t0 is a whole
// bucket before it), a given phase moves the model's buckets and nothing
// else, and one outside (0, 100 ms] is a config error.
func TestBucketPhase(t *testing.T) {
	for _, c := range []struct {
		tms  int64
		want time.Duration
	}{{-119, 19 * time.Millisecond}, {-7, 7 * time.Millisecond}, {-200, 100 * time.Millisecond}, {-1090, 90 * time.Millisecond}} {
		if got := (Observation{Points: []Point{{TMS: c.tms}}}).bucketPhase(); got != c.want {
			t.Errorf("first t_ms %d: phase %v, want %v", c.tms, got, c.want)
		}
	}
	if got := (Observation{}).bucketPhase(); got != 0 {
		t.Errorf("no timeline: phase %v, want 0 (drawn)", got)
	}
	m := DefaultModel()
	f := Fleet{Clients: 500, Strategy: "immediate", Scenario: "kill", BucketPhase: 5 * time.Millisecond}
	a := run(t, m, f)
	f.BucketPhase = 95 * time.Millisecond
	b := run(t, m, f)
	if ttr(a) != ttr(b) || a.ListenOverflows != b.ListenOverflows || a.ConnectAttempts != b.ConnectAttempts {
		t.Errorf("the bucket phase changed the storm: %v/%d/%d vs %v/%d/%d", ttr(a), a.ListenOverflows, a.ConnectAttempts, ttr(b), b.ListenOverflows, b.ConnectAttempts)
	}
	var sa, sb int64
	for _, v := range a.Timeline {
		sa += v
	}
	for _, v := range b.Timeline {
		sb += v
	}
	if sa != a.ConnectAttempts || sb != b.ConnectAttempts {
		t.Errorf("timeline sums %d, %d; want every connect (%d, %d)", sa, sb, a.ConnectAttempts, b.ConnectAttempts)
	}
	for _, p := range []time.Duration{-time.Millisecond, 101 * time.Millisecond} {
		f.BucketPhase = p
		if err := f.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("phase %v: %v, want ErrConfig", p, err)
		}
	}
}
