package simulate

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/dialer"
)

func run(t *testing.T, m Model, f Fleet) *Result {
	t.Helper()
	r, err := Run(context.Background(), m, f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ttr(r *Result) time.Duration {
	if r.TimeToRecoverMS == nil {
		return -1
	}
	return time.Duration(*r.TimeToRecoverMS) * time.Millisecond
}

// TestKillOutcomes: the model reproduces what the lab shows qualitatively:
// a fleet redialling at once overflows a 128-slot accept queue, the
// stormguard dialer (real code, simulated clock) spreads the fleet and
// does not, and everyone recovers.
func TestKillOutcomes(t *testing.T) {
	m := DefaultModel()
	imm := run(t, m, Fleet{Clients: 3000, Strategy: "immediate", Scenario: "kill"})
	sg := run(t, m, Fleet{Clients: 3000, Strategy: "stormguard", Scenario: "kill", Observe: true})
	if imm.ListenOverflows == 0 || !imm.Recovered {
		t.Errorf("immediate: %d overflows, recovered %v; want overflows and recovery", imm.ListenOverflows, imm.Recovered)
	}
	if sg.ListenOverflows*10 > imm.ListenOverflows || !sg.Recovered {
		t.Errorf("stormguard: %d overflows (immediate %d), recovered %v", sg.ListenOverflows, imm.ListenOverflows, sg.Recovered)
	}
	if sg.PeakConnectsPerSec >= imm.PeakConnectsPerSec {
		t.Errorf("stormguard peak %d/s not below immediate's %d/s", sg.PeakConnectsPerSec, imm.PeakConnectsPerSec)
	}
	if imm.ConnectAttempts < 3000 || sg.ConnectAttempts < 3000 {
		t.Errorf("fewer attempts than clients: %d, %d", imm.ConnectAttempts, sg.ConnectAttempts)
	}
}

// TestFleetSizeUnknown: without connected_clients the dialer's window is
// ReconnectWindow (1s) and grows from congestion; it still recovers.
func TestFleetSizeUnknown(t *testing.T) {
	r := run(t, DefaultModel(), Fleet{Clients: 4000, Strategy: "stormguard", Scenario: "kill"})
	if !r.Recovered {
		t.Fatalf("not recovered: %+v", r)
	}
}

func TestScenarios(t *testing.T) {
	m := DefaultModel()
	tests := []struct {
		name  string
		m     func(Model) Model
		f     Fleet
		check func(t *testing.T, r *Result)
	}{
		{"restart: refused while down, back after", nil,
			Fleet{Clients: 500, Strategy: "glide", Scenario: "restart", Down: time.Second},
			func(t *testing.T, r *Result) {
				if r.ConnectFailures == 0 || !r.Recovered || ttr(r) < time.Second {
					t.Errorf("want refused connects and recovery after 1s: %d failures, ttr %s", r.ConnectFailures, ttr(r))
				}
			}},
		{"blip: nothing gets through for 2s", nil,
			Fleet{Clients: 500, Strategy: "full-jitter", Scenario: "blip", Blip: 2 * time.Second},
			func(t *testing.T, r *Result) {
				// SYNs sent during the blip are dropped and retransmitted
				// a second later: nobody is back before it ends. (The
				// retransmits leave on the timer wheel's ticks, in
				// batches, so the accept queue may overflow after it, as
				// the lab's blips do.)
				if !r.Recovered || ttr(r) < 2*time.Second {
					t.Errorf("want recovery after the blip: ttr %s, overflows %d", ttr(r), r.ListenOverflows)
				}
			}},
		{"blip with the dialer", nil,
			Fleet{Clients: 500, Strategy: "stormguard", Scenario: "blip", Observe: true},
			func(t *testing.T, r *Result) {
				if !r.Recovered {
					t.Errorf("not recovered: ttr %s", ttr(r))
				}
			}},
		{"short hold: connections younger than StableAfter", nil,
			Fleet{Clients: 3000, Strategy: "stormguard", Scenario: "kill", Hold: time.Second, Observe: true},
			func(t *testing.T, r *Result) {
				if !r.Recovered || r.ListenOverflows > 100 {
					t.Errorf("young connections lost protection: %d overflows, ttr %s", r.ListenOverflows, ttr(r))
				}
			}},
		{"abort_on_overflow resets instead of dropping", func(m Model) Model { m.AbortOnOverflow = true; return m },
			Fleet{Clients: 3000, Strategy: "immediate", Scenario: "kill"},
			func(t *testing.T, r *Result) {
				if !r.Recovered || r.ListenOverflows == 0 {
					t.Errorf("ttr %s, overflows %d", ttr(r), r.ListenOverflows)
				}
			}},
		{"no syncookies", func(m Model) Model { m.Syncookies = false; return m },
			Fleet{Clients: 3000, Strategy: "immediate", Scenario: "kill"},
			func(t *testing.T, r *Result) {
				if !r.Recovered {
					t.Errorf("not recovered")
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mm := m
			if tt.m != nil {
				mm = tt.m(m)
			}
			tt.check(t, run(t, mm, tt.f))
		})
	}
}

// TestTLSIsSlower: one TLS accept per loop turn and a handshake each make
// the same fleet recover later.
func TestTLSIsSlower(t *testing.T) {
	m := DefaultModel()
	plain := run(t, m, Fleet{Clients: 1000, Strategy: "full-jitter", Scenario: "kill"})
	m.TLS = true
	tls := run(t, m, Fleet{Clients: 1000, Strategy: "full-jitter", Scenario: "kill"})
	if ttr(tls) <= ttr(plain) && tls.Recovered {
		t.Errorf("TLS recovered in %s, plain in %s", ttr(tls), ttr(plain))
	}
}

func TestDeterministic(t *testing.T) {
	f := Fleet{Clients: 2000, Strategy: "stormguard", Scenario: "kill", Seed: 7, Observe: true}
	a, b := run(t, DefaultModel(), f), run(t, DefaultModel(), f)
	if a.ConnectAttempts != b.ConnectAttempts || a.ListenOverflows != b.ListenOverflows || ttr(a) != ttr(b) {
		t.Errorf("same seed, different results: %+v vs %+v", a, b)
	}
}

func TestValidate(t *testing.T) {
	bad := []Fleet{
		{Clients: 0, Strategy: "immediate", Scenario: "kill"},
		{Clients: 10, Strategy: "go-redis", Scenario: "kill"},
		{Clients: 10, Strategy: "immediate", Scenario: "churn"},
		{Clients: 10, Strategy: "glide", Scenario: "kill", Policy: labGlide(0)},
		{Clients: 10, Strategy: "immediate", Scenario: "kill", Duration: time.Hour},
	}
	for _, f := range bad {
		if _, err := Run(context.Background(), DefaultModel(), f); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: error %v, want ErrConfig", f, err)
		}
	}
	// NaN fails every comparison: a float field set to it must still be
	// refused, as must an infinite dial rate.
	nan := math.NaN()
	for _, set := range []func(*Model){
		func(m *Model) { m.ClientShare = nan }, func(m *Model) { m.ClientBurst = nan },
		func(m *Model) { m.HostLoad = nan }, func(m *Model) { m.ClientDialRate = nan },
		func(m *Model) { m.ClientDialRate = math.Inf(1) }, func(m *Model) { m.ConnCost = -1 },
	} {
		m := DefaultModel()
		set(&m)
		if err := m.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: Validate() = %v, want ErrConfig", m, err)
		}
	}
	m := DefaultModel()
	m.MaxNewConnsPerCycle = 5000
	if _, err := Run(context.Background(), m, Fleet{Clients: 10, Strategy: "immediate", Scenario: "kill"}); !errors.Is(err, ErrConfig) {
		t.Errorf("max-new-connections-per-cycle 5000 accepted: %v", err)
	}
	if _, err := Run(context.Background(), DefaultModel(), Fleet{Clients: 10, Strategy: "stormguard", Scenario: "kill",
		Dialer: dialer.Options{Rate: -5}}); !errors.Is(err, ErrConfig) {
		t.Errorf("bad dialer options accepted: %v", err)
	}
}

func TestFairShare(t *testing.T) {
	for _, c := range []struct {
		cores, gen, load, want float64
	}{
		{2, 0, 0, 1},       // Valkey alone
		{2, 1, 0, 1},       // a busy generator on the other core
		{2, 1.5, 0.5, 0.5}, // four threads' worth on two cores: Valkey, 1, 0.5, 0.5 -> levels 0.5+0.5+0.5+0.5
		{2, 2, 1, 0.5},     // Valkey, 1, 1, 1 on two cores
		{2, 1, 0.2, 0.9},   // Valkey and the generator share 1.8 cores after the small thread
		{1, 0, 0, 1},
		{1, 1, 0, 0.5},
		{2, 50, 60, minShare},
	} {
		var buf []float64
		if got := fairShare(c.cores, c.gen, c.load, &buf); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("fairShare(%g, %g, %g) = %g, want %g", c.cores, c.gen, c.load, got, c.want)
		}
	}
}

// The host model only costs Valkey CPU when the host is oversubscribed:
// with a client side that fits beside Valkey the storm is the same as on
// a host of its own; with one that grows with the fleet, the same server
// recovers a large fleet more slowly.
func TestHostSharedWithFleet(t *testing.T) {
	ctx := context.Background()
	f := Fleet{Clients: 6000, Strategy: "immediate", Scenario: "kill", Period: 3 * time.Second}
	// Exact retransmit timeouts: with the timer wheel's batches the time
	// to recover moves in steps of the retransmit schedule, which would
	// hide the server's speed this test is about.
	base := DefaultModel()
	base.HZ = -1
	own, err := Run(ctx, base, f)
	if err != nil {
		t.Fatal(err)
	}
	m := base
	m.HostCores = 2
	fits, err := Run(ctx, m, f)
	if err != nil {
		t.Fatal(err)
	}
	if *fits.TimeToRecoverMS != *own.TimeToRecoverMS || fits.ListenOverflows != own.ListenOverflows {
		t.Fatalf("2 cores, no other demand: recover %d ms / %d overflows, own host %d ms / %d",
			*fits.TimeToRecoverMS, fits.ListenOverflows, *own.TimeToRecoverMS, own.ListenOverflows)
	}
	m.ClientCPU, m.HostLoad = 400*time.Microsecond, 1
	shared, err := Run(ctx, m, f)
	if err != nil {
		t.Fatal(err)
	}
	if !shared.Recovered || *shared.TimeToRecoverMS <= *own.TimeToRecoverMS {
		t.Fatalf("a busy shared host: recovered %v in %v ms, want slower than %d ms", shared.Recovered, shared.TimeToRecoverMS, *own.TimeToRecoverMS)
	}
}

// TestAcceptQueueHoldsLimitPlusOne: the kernel's sk_acceptq_is_full
// tests depth > limit, so at somaxconn 128 the 129th connection still
// gets in (the lab admits batches of 129) and the 130th is dropped.
func TestAcceptQueueHoldsLimitPlusOne(t *testing.T) {
	m := DefaultModel().withDefaults()
	if m.acceptFull(m.acceptLimit()) || !m.acceptFull(m.acceptLimit()+1) {
		t.Fatalf("limit %d: full at depth %d = %v, at %d = %v; want false, true", m.acceptLimit(),
			m.acceptLimit(), m.acceptFull(m.acceptLimit()), m.acceptLimit()+1, m.acceptFull(m.acceptLimit()+1))
	}
}

// TestPolicyDrivesSimulatedTime: the clients' waits are package backoff's
// schedule, not a copy: one client of an unjittered GLIDE (3 retries,
// 100 ms × 2^n) against a server down for 2 s is refused at 0 and after
// waits of 200, 400 and 800 ms (the schedule's first three delays), then
// waits the schedule's constant tail (800 ms) and connects at ~2.2 s, the
// first attempt after the server is back.
func TestPolicyDrivesSimulatedTime(t *testing.T) {
	g := backoff.GLIDE{Retries: 3, Factor: 100, ExponentBase: 2}
	sched, err := backoff.NewSchedule(g, nil)
	if err != nil {
		t.Fatal(err)
	}
	var at []time.Duration // when the schedule says each attempt is made
	for now := time.Duration(0); now < 2*time.Second; now += sched.Failure() {
		at = append(at, now)
	}
	at = append(at, at[len(at)-1]+g.Delay(len(at), 0, nil))
	r := run(t, DefaultModel(), Fleet{Clients: 1, Strategy: "glide", Scenario: "restart", Down: 2 * time.Second,
		Policy: backoff.Params{GLIDE: g}})
	if r.ConnectAttempts != int64(len(at)) || r.ConnectFailures != int64(len(at)-1) {
		t.Errorf("%d attempts, %d failures; the schedule makes %d attempts at %v", r.ConnectAttempts, r.ConnectFailures, len(at), at)
	}
	// Each refusal arrives one RTT after its attempt, the reply one RTT
	// after the connect: allow 1 ms per attempt.
	want := at[len(at)-1]
	if got := ttr(r); got < want || got > want+time.Duration(len(at))*time.Millisecond {
		t.Errorf("recovered at %s; the schedule's last attempt is at %s (attempts at %v)", got, want, at)
	}
}

// TestFailedAndRecoveredTimelines: the per-bucket failed commands and
// clients back add up to the run's totals (the lab's timeline has both).
func TestFailedAndRecoveredTimelines(t *testing.T) {
	m := DefaultModel()
	m.NoticeCost, m.AnswerCost, m.DialCost = 10*time.Microsecond, 5*time.Microsecond, 16*time.Microsecond
	r := run(t, m, Fleet{Clients: 2000, Strategy: "immediate", Scenario: "restart", Down: time.Second, Period: 3 * time.Second})
	var failed, back int64
	for _, v := range r.FailedTimeline {
		failed += v
	}
	for _, v := range r.RecoveredTimeline {
		back += v
	}
	if failed != r.FailedCommands || back != int64(r.RecoveredClients) {
		t.Errorf("timelines add up to %d failed, %d back; totals %d, %d", failed, back, r.FailedCommands, r.RecoveredClients)
	}
	if len(r.FailedTimeline) == 0 || r.FailedTimeline[0] == 0 {
		t.Errorf("no failed command in the restart's first bucket: %v", r.FailedTimeline)
	}
}
