package backoff

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// fixedRand returns the same draw every time, to pin U(lo, hi) to an end.
type fixedRand float64

func (f fixedRand) Float64() float64 { return float64(f) }

// TestGLIDEParity checks the behaviours of released valkey-glide v2.5.1
// (tag commit 6070e0796ba1), glide-core/redis-rs/redis/src/retry_strategies.rs
// get_infinite_backoff_dur_iterator (lines 73-92) as reconnect() in
// glide-core/src/client/reconnecting_connection.rs (lines 459-527) uses
// it, at the extremes of the jitter draw: draw 0 gives the low end of
// U(1−j, 1+j), draw →1 the high end.
func TestGLIDEParity(t *testing.T) {
	const almost1 = 0.999999999
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	tests := []struct {
		name   string
		p      GLIDE
		n      int
		lo, hi time.Duration // delay with draw 0 and draw almost1
	}{
		{"first reconnect immediate", DefaultGLIDE(), 0, 0, 0},
		{"default step 1 200ms±20%", DefaultGLIDE(), 1, ms(160), ms(240)},
		{"default step 2 400ms±20%", DefaultGLIDE(), 2, ms(320), ms(480)},
		{"default step 3 800ms±20%", DefaultGLIDE(), 3, ms(640), ms(960)},
		{"default step 4 1600ms±20%", DefaultGLIDE(), 4, ms(1280), ms(1920)},
		{"default step 5 3200ms±20%", DefaultGLIDE(), 5, ms(2560), ms(3840)},
		{"tail unjittered 3200ms", DefaultGLIDE(), 6, ms(3200), ms(3200)},
		{"tail forever", DefaultGLIDE(), 1000, ms(3200), ms(3200)},
		{"slow example 5,1000,2,20% step 1", GLIDE{5, 1000, 2, 20}, 1, ms(1600), ms(2400)},
		{"slow example tail 32s", GLIDE{5, 1000, 2, 20}, 7, 32 * time.Second, 32 * time.Second},
		{"factor 0 means 100", GLIDE{5, 0, 2, 0}, 1, ms(200), ms(200)},
		{"base 0 means 2", GLIDE{5, 100, 0, 0}, 3, ms(800), ms(800)},
		{"jitter 100 is U(0,2) low", GLIDE{5, 100, 2, 100}, 1, 0, ms(400)},
		{"jitter 100 tail still unjittered", GLIDE{5, 100, 2, 100}, 6, ms(3200), ms(3200)},
		{"jitter 0 exact", GLIDE{3, 10, 10, 0}, 3, ms(10000), ms(10000)},
		{"retries 1: tail is factor·base^1", GLIDE{1, 100, 2, 20}, 2, ms(200), ms(200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.p.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			lo := tt.p.Delay(tt.n, 0, fixedRand(0))
			hi := tt.p.Delay(tt.n, 0, fixedRand(almost1))
			// Allow 1µs of float rounding at the high end.
			if lo != tt.lo || hi < tt.hi-time.Microsecond || hi > tt.hi {
				t.Errorf("Delay(%d) = [%s, %s], want [%s, %s]", tt.n, lo, hi, tt.lo, tt.hi)
			}
		})
	}
}

func TestGLIDEValidate(t *testing.T) {
	tests := []struct {
		p  GLIDE
		ok bool
	}{
		{DefaultGLIDE(), true},
		{GLIDE{Retries: 1}, true},
		{GLIDE{Retries: 5, JitterPercent: 100}, true},
		{GLIDE{Retries: 5, JitterPercent: 101}, false},
		// Released GLIDE (v2.5.1 retry_strategies.rs line 82) computes
		// number_of_retries as usize - 1: 0 underflows.
		{GLIDE{}, false},
		{GLIDE{Retries: 0, Factor: 100, ExponentBase: 2, JitterPercent: 20}, false},
		{GLIDE{Retries: -1}, false},
		{GLIDE{Factor: -5}, false},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%+v Validate() = %v, want ok=%v", tt.p, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v error %v does not wrap ErrInvalidConfig", tt.p, err)
		}
	}
	if _, err := NewSchedule(GLIDE{Retries: 5, JitterPercent: 150}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewSchedule with jitter 150%% = %v, want ErrInvalidConfig", err)
	}
	if _, err := NewSchedule(GLIDE{}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewSchedule with 0 retries = %v, want ErrInvalidConfig", err)
	}
}

// TestGLIDEJitterZeroIsExact: a jitter of 0 means no jitter, whatever the
// draw.
func TestGLIDEJitterZeroIsExact(t *testing.T) {
	p := GLIDE{Retries: 3, Factor: 100, ExponentBase: 2}
	for _, draw := range []float64{0, 0.3, 0.999} {
		for n, want := range []time.Duration{0, 200, 400, 800, 800} {
			if got := p.Delay(n, 0, fixedRand(draw)); got != want*time.Millisecond {
				t.Errorf("draw %g: Delay(%d) = %s, want %s", draw, n, got, want*time.Millisecond)
			}
		}
	}
}

// TestGLIDEStats draws many schedules with a fixed seed and checks the
// per-attempt min, mean and max against U(1−j, 1+j)·step.
func TestGLIDEStats(t *testing.T) {
	p := DefaultGLIDE()
	r := rand.New(rand.NewPCG(1, 2))
	const samples = 20000
	for n := 1; n <= 7; n++ {
		step := 100.0 * float64(int(1)<<min(n, 5))
		j := 0.2
		if n > 5 {
			j = 0
		}
		st := collect(samples, func() time.Duration { return p.Delay(n, 0, r) })
		if st.min < step*(1-j) || st.max > step*(1+j) {
			t.Errorf("attempt %d: range [%.1f, %.1f] ms outside [%.1f, %.1f]", n, st.min, st.max, step*(1-j), step*(1+j))
		}
		if j > 0 && (st.min > step*(1-j)*1.01 || st.max < step*(1+j)*0.99) {
			t.Errorf("attempt %d: range [%.1f, %.1f] ms does not fill ±%.0f%%", n, st.min, st.max, j*100)
		}
		if d := st.mean/step - 1; d > 0.01 || d < -0.01 {
			t.Errorf("attempt %d: mean %.1f ms, want %.1f ±1%%", n, st.mean, step)
		}
	}
}

type stats struct{ min, mean, max float64 }

func collect(n int, f func() time.Duration) stats {
	s := stats{min: 1e300}
	for i := 0; i < n; i++ {
		v := float64(f()) / float64(time.Millisecond)
		s.min, s.max = min(s.min, v), max(s.max, v)
		s.mean += v / float64(n)
	}
	return s
}
