package backoff

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestJitterStats checks each Brooker policy and gRPC per attempt, with a
// fixed seed: delays stay inside the documented range, spread over it, and
// average where the distribution says.
func TestJitterStats(t *testing.T) {
	const samples = 20000
	base, cap := 100*time.Millisecond, 2*time.Second
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	expoMS := func(n int) float64 { return min(ms(cap), ms(base)*float64(int(1)<<(n-1))) }
	grpcMS := func(n int) float64 {
		v := 1000.0
		for i := 1; i < n; i++ {
			v *= 1.6
		}
		return min(v, 120000)
	}
	tests := []struct {
		name          string
		p             Policy
		lo, mean, hi  func(n int) float64
		prevDependent bool
	}{
		{"full", FullJitter{base, cap},
			func(int) float64 { return 0 }, func(n int) float64 { return expoMS(n) / 2 }, expoMS, false},
		{"equal", EqualJitter{base, cap},
			func(n int) float64 { return expoMS(n) / 2 }, func(n int) float64 { return expoMS(n) * 3 / 4 }, expoMS, false},
		{"grpc", DefaultGRPC(),
			func(n int) float64 {
				if n == 1 {
					return 1000
				}
				return grpcMS(n) * 0.8
			},
			grpcMS,
			func(n int) float64 {
				if n == 1 {
					return 1000
				}
				return grpcMS(n) * 1.2
			}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 8))
			for n := 1; n <= 14; n++ {
				st := collect(samples, func() time.Duration { return tt.p.Delay(n, 0, r) })
				lo, mean, hi := tt.lo(n), tt.mean(n), tt.hi(n)
				if st.min < lo-1e-6 || st.max > hi+1e-6 {
					t.Errorf("attempt %d: range [%.2f, %.2f] outside [%.2f, %.2f]", n, st.min, st.max, lo, hi)
				}
				if spread := hi - lo; spread > 0 && (st.min > lo+spread*0.01 || st.max < hi-spread*0.01) {
					t.Errorf("attempt %d: range [%.2f, %.2f] does not fill [%.2f, %.2f]", n, st.min, st.max, lo, hi)
				}
				if d := st.mean/mean - 1; d > 0.02 || d < -0.02 {
					t.Errorf("attempt %d: mean %.2f, want %.2f ±2%%", n, st.mean, mean)
				}
			}
			if d := tt.p.Delay(0, 0, r); d != 0 {
				t.Errorf("Delay(0) = %s, want 0 (first reconnect immediate)", d)
			}
		})
	}
}

// TestDecorrelated follows schedules (each delay depends on the previous)
// and checks min(cap, U(base, 3·prev)).
func TestDecorrelated(t *testing.T) {
	p := DecorrelatedJitter{Base: 50 * time.Millisecond, Cap: time.Second}
	r := rand.New(rand.NewPCG(3, 4))
	capped := 0
	for i := 0; i < 2000; i++ {
		s, err := NewSchedule(p, r)
		if err != nil {
			t.Fatal(err)
		}
		prev := p.Base
		for n := 1; n <= 20; n++ {
			d := s.Failure()
			if d < p.Base || d > p.Cap || d > 3*prev {
				t.Fatalf("schedule %d attempt %d: %s after %s, want within [%s, min(%s, 3·prev)]", i, n, d, prev, p.Base, p.Cap)
			}
			if d == p.Cap {
				capped++
			}
			prev = d
		}
	}
	// Decorrelated grows to the cap within a few steps and, once there,
	// U(base, 3·cap) lands on the cap about 2/3 of the time; it also
	// falls back, so a fifth of all delays is a conservative floor.
	if capped < 40000/5 {
		t.Errorf("only %d of 40000 delays reached the cap; decorrelated should grow to it", capped)
	}
}

func TestPolicyValidate(t *testing.T) {
	bad := []Policy{
		FullJitter{Base: time.Second, Cap: time.Millisecond},
		EqualJitter{Base: -1},
		DecorrelatedJitter{Cap: -1},
		GRPC{Multiplier: 0.5},
		GRPC{Jitter: 1.5},
		GRPC{Initial: 200 * time.Second},
		GLIDE{JitterPercent: 101},
	}
	for _, p := range bad {
		if err := p.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%T%+v Validate() = %v, want ErrInvalidConfig", p, p, err)
		}
	}
	good := []Policy{FullJitter{}, EqualJitter{}, DecorrelatedJitter{}, GRPC{}, DefaultGRPC(), DefaultGLIDE(), Immediate{}}
	for _, p := range good {
		if err := p.Validate(); err != nil {
			t.Errorf("%T%+v Validate() = %v, want nil", p, p, err)
		}
	}
}

// TestInvalidPolicyFailsSafe: an invalid policy is an error at
// construction, and a Delay called on one anyway is never 0 (a client
// that ignored the error must not redial in a tight loop).
func TestInvalidPolicyFailsSafe(t *testing.T) {
	bad := []Policy{
		FullJitter{Base: time.Second, Cap: time.Millisecond},
		EqualJitter{Base: -1},
		DecorrelatedJitter{Cap: -1},
		GRPC{Multiplier: 0.5},
		GLIDE{},
		GLIDE{Retries: 5, JitterPercent: 150},
	}
	for _, p := range bad {
		if _, err := NewSchedule(p, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%T%+v: NewSchedule error %v, want ErrInvalidConfig", p, p, err)
		}
		for n := 1; n <= 5; n++ {
			if d := p.Delay(n, 0, fixedRand(0.5)); d <= 0 {
				t.Errorf("%T%+v: Delay(%d) = %s, want > 0 (fail safe)", p, p, n, d)
			}
		}
	}
}

// TestGRPCJitterZeroIsExact: GRPC{Jitter: 0} has no jitter (only the
// other zero fields mean defaults).
func TestGRPCJitterZeroIsExact(t *testing.T) {
	p := GRPC{}
	for _, draw := range []float64{0, 0.999} {
		if got, want := p.Delay(2, 0, fixedRand(draw)), 1600*time.Millisecond; got != want {
			t.Errorf("draw %g: Delay(2) = %s, want %s", draw, got, want)
		}
	}
	if got := DefaultGRPC().Delay(2, 0, fixedRand(0)); got != 1280*time.Millisecond {
		t.Errorf("DefaultGRPC().Delay(2) at draw 0 = %s, want 1.28s", got)
	}
}

func TestGRPCConnectTimeout(t *testing.T) {
	p := GRPC{}
	if got := p.ConnectTimeout(time.Second); got != 20*time.Second {
		t.Errorf("ConnectTimeout(1s) = %s, want 20s", got)
	}
	if got := p.ConnectTimeout(100 * time.Second); got != 100*time.Second {
		t.Errorf("ConnectTimeout(100s) = %s, want 100s", got)
	}
}

func TestScheduleReset(t *testing.T) {
	s, err := NewSchedule(DefaultGLIDE(), fixedRand(0.5))
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{200, 400, 800, 1600, 3200, 3200}
	for i, w := range want {
		if d := s.Failure(); d != w*time.Millisecond {
			t.Fatalf("failure %d: %s, want %s", i+1, d, w*time.Millisecond)
		}
	}
	s.Reset()
	if s.Failures() != 0 {
		t.Fatalf("Failures after Reset = %d", s.Failures())
	}
	if d := s.Failure(); d != 200*time.Millisecond {
		t.Fatalf("first failure after Reset: %s, want 200ms", d)
	}
}

func TestHugeAttemptsSaturate(t *testing.T) {
	for _, p := range []Policy{GLIDE{Retries: 10000, Factor: 1000, ExponentBase: 10}, FullJitter{}, DefaultGRPC()} {
		if d := p.Delay(1<<30, 0, fixedRand(0.5)); d < 0 {
			t.Errorf("%T Delay(huge) = %s, negative", p, d)
		}
	}
}

// TestEveryPolicyFailsSafe goes through every policy type (and ByName,
// the CLI's and the lab's constructor): an invalid configuration is an
// error wrapping ErrInvalidConfig from Validate, NewSchedule and ByName,
// never a schedule; a Delay called on it anyway is positive and finite
// at every draw but 0 (FailSafe's full jitter may draw 0 exactly), never 0,
// negative or the maximum Duration. NaN and ±Inf, which fail every
// comparison, are invalid too.
func TestEveryPolicyFailsSafe(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	bad := []struct {
		p      Policy
		byName string // the ByName spelling when it can express p, else ""
		params Params
	}{
		{Fixed{Every: -time.Second}, "fixed", Params{Delay: -time.Second}},
		{GLIDE{}, "glide", Params{}},
		{GLIDE{Retries: -1, Factor: 100, ExponentBase: 2}, "glide", Params{GLIDE: GLIDE{Retries: -1, Factor: 100, ExponentBase: 2}}},
		{GLIDE{Retries: 5, Factor: -1}, "glide", Params{GLIDE: GLIDE{Retries: 5, Factor: -1}}},
		{GLIDE{Retries: 5, ExponentBase: -2}, "glide", Params{GLIDE: GLIDE{Retries: 5, ExponentBase: -2}}},
		{GLIDE{Retries: 5, JitterPercent: -1}, "glide", Params{GLIDE: GLIDE{Retries: 5, JitterPercent: -1}}},
		{GLIDE{Retries: 5, JitterPercent: 101}, "glide", Params{GLIDE: GLIDE{Retries: 5, JitterPercent: 101}}},
		{FullJitter{Base: -time.Millisecond}, "full-jitter", Params{Base: -time.Millisecond}},
		{FullJitter{Cap: -time.Second}, "full-jitter", Params{Cap: -time.Second}},
		{FullJitter{Base: time.Minute, Cap: time.Second}, "full-jitter", Params{Base: time.Minute, Cap: time.Second}},
		{EqualJitter{Base: -1}, "equal-jitter", Params{Base: -1}},
		{EqualJitter{Base: time.Minute, Cap: time.Second}, "equal-jitter", Params{Base: time.Minute, Cap: time.Second}},
		{DecorrelatedJitter{Cap: -1}, "decorrelated", Params{Cap: -1}},
		{DecorrelatedJitter{Base: time.Minute, Cap: time.Second}, "decorrelated", Params{Base: time.Minute, Cap: time.Second}},
		{GRPC{Initial: -time.Second}, "grpc", Params{Base: -time.Second}},
		{GRPC{Max: -time.Second}, "grpc", Params{Cap: -time.Second}},
		{GRPC{Initial: 200 * time.Second}, "grpc", Params{Base: 200 * time.Second}},
		{GRPC{MinConnectTimeout: -1}, "", Params{}},
		{GRPC{Multiplier: 0.5}, "", Params{}},
		{GRPC{Multiplier: -2}, "", Params{}},
		{GRPC{Multiplier: nan}, "", Params{}},
		{GRPC{Multiplier: inf}, "", Params{}},
		{GRPC{Jitter: -0.1}, "", Params{}},
		{GRPC{Jitter: 1.5}, "", Params{}},
		{GRPC{Jitter: nan}, "", Params{}},
		{GRPC{Jitter: inf}, "", Params{}},
	}
	for _, b := range bad {
		name := fmt.Sprintf("%T%+v", b.p, b.p)
		if err := b.p.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidConfig", name, err)
		}
		if s, err := NewSchedule(b.p, nil); !errors.Is(err, ErrInvalidConfig) || s != nil {
			t.Errorf("%s: NewSchedule = %v, %v; want nil, ErrInvalidConfig", name, s, err)
		}
		if b.byName != "" {
			if p, err := ByName(b.byName, b.params); !errors.Is(err, ErrInvalidConfig) || p != nil {
				t.Errorf("%s: ByName(%q) = %v, %v; want nil, ErrInvalidConfig", name, b.byName, p, err)
			}
		}
		for n := 1; n <= 40; n++ {
			for _, draw := range []float64{0.001, 0.5, 0.999} {
				d := b.p.Delay(n, 0, fixedRand(draw))
				if d <= 0 || d > DefaultJitterCap*3 {
					t.Errorf("%s: Delay(%d) at draw %g = %s, want within (0, %s] (fail safe)", name, n, draw, d, DefaultJitterCap*3)
				}
			}
		}
	}
}

// TestEveryPolicyZeroJitterIsExact: a jitter of 0 means no jitter — the
// delay does not depend on the draw — for each policy with a jitter
// parameter (GLIDE.JitterPercent, GRPC.Jitter); the others are checked
// to be positive and valid at their zero value (their zero fields mean
// the defaults, never a zero delay after a failure).
func TestEveryPolicyZeroJitterIsExact(t *testing.T) {
	for _, p := range []Policy{GLIDE{Retries: 5}, GLIDE{Retries: 3, Factor: 7, ExponentBase: 3}, GRPC{}, GRPC{Initial: time.Second, Multiplier: 2, Max: time.Minute}} {
		if err := p.Validate(); err != nil {
			t.Fatalf("%T%+v: %v", p, p, err)
		}
		for n := 1; n <= 12; n++ {
			lo, hi := p.Delay(n, 0, fixedRand(0)), p.Delay(n, 0, fixedRand(0.999))
			if lo != hi || lo <= 0 {
				t.Errorf("%T%+v: Delay(%d) = %s at draw 0, %s at draw 0.999; want one positive value", p, p, n, lo, hi)
			}
		}
	}
	for _, p := range []Policy{Fixed{}, FullJitter{}, EqualJitter{}, DecorrelatedJitter{}, GRPC{}} {
		if err := p.Validate(); err != nil {
			t.Errorf("%T zero value: Validate() = %v", p, err)
		}
		for n := 1; n <= 12; n++ {
			if d := p.Delay(n, 0, fixedRand(0.5)); d <= 0 {
				t.Errorf("%T zero value: Delay(%d) = %s, want > 0", p, n, d)
			}
		}
	}
}
