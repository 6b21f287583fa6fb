package backoff

import (
	"errors"
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
