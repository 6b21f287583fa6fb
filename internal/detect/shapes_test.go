package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// world is a small model of one Valkey listener fed to the detector: the
// kernel queues connections that arrive, Valkey accepts up to capacity per
// second, the queue overflows at its limit, and every connection either
// stays (a pool) or closes again at once (per-request). Shapes drive it
// with an arrival rate per tick and whatever else they change; it keeps
// the builder's counters consistent (PassiveOpens = admitted, Valkey's
// counter = accepted, drops = overflow).
type world struct {
	b        *builder
	rng      *rand.Rand
	capacity float64 // accepts per second
	queue    float64
	// firstDrop is the time of the first sample with a counted drop of
	// any kind (zero: none yet).
	firstDrop time.Time
}

func newWorld(dt time.Duration, seed uint64) *world {
	b := newBuilder(dt)
	b.clients = 200
	return &world{b: b, rng: rand.New(rand.NewPCG(seed, 99)), capacity: 30000}
}

// step advances one interval: arrive connections/s offered, of which the
// fraction stay stays connected; spike is an extra one-interval burst of
// connections arriving at once (a pool opening).
func (w *world) step(arrive, stay float64, spike float64) *sample.Sample {
	b := w.b
	sec := b.dt.Seconds()
	lim := float64(b.limit)
	// Arrivals spread over the interval are served as they come while
	// Valkey keeps up; what it cannot take waits in the queue. A spike
	// lands at once.
	q0 := w.queue
	peak := q0 + spike + max(0, arrive-w.capacity)*sec
	dropped := max(0, peak-lim)
	peak = min(peak, lim)
	in := arrive*sec + spike
	w.queue = min(lim, max(0, q0+spike+(arrive-w.capacity)*sec))
	acc := q0 + in - dropped - w.queue
	if peak < 1 {
		peak = float64(w.rng.IntN(3)) // a connection caught in the queue now and then
	}
	b.depthMax = uint64(peak)
	b.passive += in - dropped
	b.vconns += acc
	b.clients = uint64(max(0, float64(b.clients)+acc*stay))
	s := b.tick(0, dropped/sec)
	if dropped > 0 && w.firstDrop.IsZero() {
		w.firstDrop = s.Time
	}
	return s
}

// estabStep is step with this port's ESTABLISHED count following the
// connected clients, as the sampler's socket count does.
func (w *world) estabStep(arrive, stay float64) *sample.Sample {
	s := w.step(arrive, stay, 0)
	if s.Listen != nil {
		s.Established = sample.U64(w.b.clients)
	}
	return s
}

// noisy returns r with ±frac uniform noise.
func (w *world) noisy(r, frac float64) float64 { return r * (1 - frac + 2*frac*w.rng.Float64()) }

type shape struct {
	name string
	dur  time.Duration
	// setup runs once before the first tick; tick returns the sample
	// for the i-th interval at elapsed time el.
	setup func(w *world)
	tick  func(w *world, i int, el time.Duration) *sample.Sample
}

// benignShapes are ordinary production traffic, each observed from the
// agent's start (no warm-up: the agent may start at any moment).
func benignShapes() []shape {
	var out []shape
	for _, r := range []float64{300, 800, 2500, 6000} {
		out = append(out, shape{name: fmt.Sprintf("per-request churn %v/s from agent start", r), dur: 5 * time.Minute,
			tick: func(w *world, i int, el time.Duration) *sample.Sample { return w.step(w.noisy(r, 0.4), 0, 0) }})
	}
	out = append(out,
		shape{name: "rolling deploy: six waves of pool warm-ups while old pools close", dur: 5 * time.Minute,
			setup: func(w *world) { w.b.clients = 1200 },
			tick: func(w *world, i int, el time.Duration) *sample.Sample {
				ph := el % (40 * time.Second)
				s := w.step(w.noisy(150, 0.3), 0, 0)
				if el > 20*time.Second && el < 260*time.Second {
					switch {
					case ph < 500*time.Millisecond: // 10 pods × 60 connections
						s = w.step(1200, 1, 0)
					case ph >= 5*time.Second && ph < 5*time.Second+w.b.dt:
						w.b.clients -= 600 // the old pods go away
					}
				}
				return s
			}},
		shape{name: "autoscaling ramp 200 → 2,400 conn/s over four minutes", dur: 6 * time.Minute,
			tick: func(w *world, i int, el time.Duration) *sample.Sample {
				x := min(el.Seconds()/240, 1)
				return w.step(w.noisy(200*math.Pow(12, x), 0.3), 0, 0)
			}},
		shape{name: "cron burst of 1,500 connections every minute", dur: 5 * time.Minute,
			tick: func(w *world, i int, el time.Duration) *sample.Sample {
				if el%time.Minute < 500*time.Millisecond {
					return w.step(3000, 0, 0)
				}
				return w.step(w.noisy(60, 0.5), 0, 0)
			}},
		shape{name: "pool of 50 opening at once on somaxconn 64", dur: 3 * time.Minute,
			setup: func(w *world) { w.b.limit, w.capacity = 64, 400 },
			tick: func(w *world, i int, el time.Duration) *sample.Sample {
				if el%(20*time.Second) < w.b.dt {
					return w.step(20, 1, 50)
				}
				return w.step(w.noisy(20, 0.5), 0, 0)
			}},
		shape{name: "slow commands make PING slow", dur: 3 * time.Minute,
			tick: func(w *world, i int, el time.Duration) *sample.Sample {
				w.b.ping = 150 + 250*w.rng.Float64()
				return w.step(w.noisy(200, 0.4), 0, 0)
			}},
		shape{name: "heavy keepalive at 85% of maxclients with churn 600/s", dur: 3 * time.Minute,
			setup: func(w *world) { w.b.clients = 8500 },
			tick:  func(w *world, i int, el time.Duration) *sample.Sample { return w.step(w.noisy(600, 0.3), 0, 0) }},
		shape{name: "Valkey restart, 3,000 clients reconnect within capacity", dur: 3 * time.Minute,
			setup: func(w *world) { w.b.clients = 3000 },
			tick: func(w *world, i int, el time.Duration) *sample.Sample {
				switch {
				case el >= 60*time.Second && el < 60*time.Second+w.b.dt:
					w.b.vconns, w.b.rejected, w.b.clients = 0, 0, 0
					return w.step(0, 0, 0)
				case el > 61*time.Second && el <= 64*time.Second:
					return w.step(1000, 1, 0)
				}
				return w.step(w.noisy(100, 0.3), 0, 0)
			}},
		shape{name: "slow link: 40 ms RTT holds SYN_RECV at rate × RTT", dur: 3 * time.Minute,
			setup: func(w *world) { w.b.limit = 64 },
			tick: func(w *world, i int, el time.Duration) *sample.Sample {
				r := w.noisy(800, 0.3)
				w.b.synRecv = uint64(r * 0.04)
				return w.step(r, 0, 0)
			}},
		shape{name: "another listener in the namespace drowning", dur: 2 * time.Minute,
			tick: func(w *world, i int, el time.Duration) *sample.Sample {
				s := w.step(w.noisy(100, 0.3), 0, 0)
				if el > 30*time.Second && el < 60*time.Second {
					w.b.passive += 3000 * w.b.dt.Seconds() // its handshakes
					w.b.drops += 500 * w.b.dt.Seconds()    // and its drops
					w.b.overflows += 500 * w.b.dt.Seconds()
				}
				return s
			}},
	)
	return out
}

// TestBenignShapes: ordinary traffic never raises surge or storm, at the
// agent's fast, medium and default sampling intervals.
func TestBenignShapes(t *testing.T) {
	for _, sh := range benignShapes() {
		for _, dt := range []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, time.Second} {
			t.Run(fmt.Sprintf("%s/%s", sh.name, dt), func(t *testing.T) {
				w := newWorld(dt, 1)
				if sh.setup != nil {
					sh.setup(w)
				}
				d := New(Config{})
				for i := 0; i < int(sh.dur/dt); i++ {
					el := time.Duration(i+1) * dt
					if _, evs := d.Observe(sh.tick(w, i, el)); len(evs) > 0 {
						t.Fatalf("at %s: %s→%s: %s", el, evs[0].From, evs[0].To, evs[0].Verdict)
					}
				}
			})
		}
	}
}

// stormShape drives a storm after a calm warm-up.
type stormShape struct {
	name string
	// slow: the accept queue fills over a second or more before the first
	// drop, so a surge must come first.
	slow  bool
	setup func(w *world)
	// tick drives the storm; el is the time since the storm began.
	tick func(w *world, el time.Duration) *sample.Sample
	dur  time.Duration
}

func stormShapes() []stormShape {
	return []stormShape{
		{name: "kill-all reconnect: 5,000 clients at once", dur: 20 * time.Second,
			setup: func(w *world) { w.capacity = 8000 },
			tick: func(w *world, el time.Duration) *sample.Sample {
				if el < 300*time.Millisecond {
					return w.step(5000/0.3, 1, 0)
				}
				return w.step(100, 0, 0)
			}},
		{name: "ramp to 4,000/s against 2,500/s of accept capacity", dur: 15 * time.Second, slow: true,
			setup: func(w *world) { w.capacity = 2500 },
			tick: func(w *world, el time.Duration) *sample.Sample {
				return w.step(40+3960*min(el.Seconds()/6, 1), 1, 0)
			}},
		{name: "slow build behind a stalled server", dur: 20 * time.Second, slow: true,
			tick: func(w *world, el time.Duration) *sample.Sample {
				w.capacity = 10 // stalled: accepts almost nothing
				w.b.ping = 3000
				return w.step(100+30*el.Seconds(), 0, 0) // clients time out and redial
			}},
		{name: "sole listener, overflow between two polls", dur: 15 * time.Second,
			setup: func(w *world) { w.b.others = new(int); w.b.limit = 64; w.capacity = 3000 },
			tick: func(w *world, el time.Duration) *sample.Sample {
				s := w.step(100, 0, 0)
				if el < 2*time.Second {
					w.b.drops += 400 * w.b.dt.Seconds() // the poller saw 20/64 at most
					w.b.overflows += 400 * w.b.dt.Seconds()
					s = w.b.tick(0, 0)
					if w.firstDrop.IsZero() {
						w.firstDrop = s.Time
					}
				}
				return s
			}},
		{name: "SYN flood without cookies: SYN queue drops", dur: 15 * time.Second,
			tick: func(w *world, el time.Duration) *sample.Sample {
				w.b.synRecv = w.b.limit
				w.b.drops += 2000 * w.b.dt.Seconds() // TCPReqQFullDrop is part of ListenDrops
				s := w.step(100, 0, 0)
				if w.firstDrop.IsZero() {
					w.firstDrop = s.Time
				}
				return s
			}},
		{name: "maxclients exhaustion", dur: 15 * time.Second,
			tick: func(w *world, el time.Duration) *sample.Sample {
				w.b.clients = w.b.maxclients
				w.b.rejected += 300 * w.b.dt.Seconds()
				s := w.step(300, 0, 0)
				if w.firstDrop.IsZero() {
					w.firstDrop = s.Time
				}
				return s
			}},
		{name: "conntrack filling over 20 s", dur: 40 * time.Second, slow: true,
			setup: func(w *world) { w.b.noConntrack, w.b.ctMax, w.b.ctCount = false, 100000, 60000 },
			tick: func(w *world, el time.Duration) *sample.Sample {
				w.b.ctCount = min(w.b.ctMax, 60000+uint64(2000*el.Seconds()))
				var s *sample.Sample
				if w.b.ctCount >= w.b.ctMax {
					w.b.ctDrop += 500 * w.b.dt.Seconds()
				}
				s = w.step(100, 0, 0)
				if w.b.ctCount >= w.b.ctMax && w.firstDrop.IsZero() {
					w.firstDrop = s.Time
				}
				return s
			}},
	}
}

// TestStormShapes: every storm reaches storm in the sample that first
// counts a drop; slow builds get a surge before it.
func TestStormShapes(t *testing.T) {
	for _, sh := range stormShapes() {
		for _, dt := range []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, time.Second} {
			t.Run(fmt.Sprintf("%s/%s", sh.name, dt), func(t *testing.T) {
				w := newWorld(dt, 2)
				if sh.setup != nil {
					sh.setup(w)
				}
				d := New(Config{})
				for i := 0; i < int(time.Minute/dt); i++ {
					if _, evs := d.Observe(w.step(w.noisy(100, 0.3), 0, 0)); len(evs) > 0 {
						t.Fatalf("warm-up: %s→%s %s", evs[0].From, evs[0].To, evs[0].Verdict)
					}
				}
				var surgeAt, stormAt time.Time
				for i := 0; i < int(sh.dur/dt); i++ {
					_, evs := d.Observe(sh.tick(w, time.Duration(i)*dt))
					for _, e := range evs {
						if e.To == Surge && surgeAt.IsZero() && stormAt.IsZero() {
							surgeAt = e.Time
						}
						if e.To == Storm && stormAt.IsZero() {
							stormAt = e.Time
						}
					}
				}
				if w.firstDrop.IsZero() {
					t.Fatal("the model never dropped")
				}
				if stormAt.IsZero() || stormAt.Sub(w.firstDrop) > 0 {
					t.Errorf("storm at %v, first drop at %v: want storm in the first dropping sample", stormAt, w.firstDrop)
				}
				if sh.slow && (surgeAt.IsZero() || !surgeAt.Before(w.firstDrop)) {
					t.Errorf("slow build: surge at %v, first drop at %v: want a surge before", surgeAt, w.firstDrop)
				}
			})
		}
	}
}

// TestStormHeldWhileRefused: a storm is not over while connections are
// refused by any means: SYNs dropped by stormguard's own mitigation, or
// connections accepted and abandoned at once (timed-out TLS handshakes)
// while Valkey's accept counter races ahead of connected_clients. Clients
// reconnecting for good after a storm do not hold it.
func TestStormHeldWhileRefused(t *testing.T) {
	tests := []struct {
		name string
		// after drives one second after the listen-queue drops stopped.
		after    func(w *world) *sample.Sample
		wantHeld bool
	}{
		{"mitigation dropping 5,000 SYNs/s", func(w *world) *sample.Sample {
			w.b.mitArmed = true
			w.b.mitDropped += 5000
			return w.step(20, 0, 0)
		}, true},
		{"9,000 handshakes/s abandoned after accept", func(w *world) *sample.Sample {
			return w.step(9000, 0, 0) // accepted, closed at once: clients flat
		}, true},
		{"mitigation armed, dropping nothing", func(w *world) *sample.Sample {
			w.b.mitArmed = true
			return w.step(20, 0, 0)
		}, false},
		{"2,000 clients/s reconnecting for good", func(w *world) *sample.Sample {
			return w.step(2000, 1, 0)
		}, false},
		// Valkey's own counters unreadable (its connection does not get
		// through the storm): the kernel's accepts against this port's
		// ESTABLISHED sockets.
		{"Valkey unreadable, 9,000 accepts/s abandoned", func(w *world) *sample.Sample {
			w.b.noValkey = true
			return w.estabStep(9000, 0)
		}, true},
		{"Valkey unreadable, 2,000 clients/s reconnecting for good", func(w *world) *sample.Sample {
			w.b.noValkey = true
			return w.estabStep(2000, 1)
		}, false},
		// Connections given up before they became clients, counted
		// directly: closed by their clients while waiting in the accept
		// queue (listen.abandoned), or accepted and never set up
		// (handshake_pending: TLS handshakes timing out).
		{"40 connections abandoned in the accept queue", func(w *world) *sample.Sample {
			w.b.abandoned = sample.U64(40)
			return w.step(20, 0, 0)
		}, true},
		{"2 connections abandoned in the accept queue", func(w *world) *sample.Sample {
			w.b.abandoned = sample.U64(2)
			return w.step(20, 0, 0)
		}, false},
		{"3,000 handshakes/s never finished", func(w *world) *sample.Sample {
			w.b.pending = sample.U64(3000)
			return w.step(20, 0, 0)
		}, true},
		{"5 handshakes in flight at the sample", func(w *world) *sample.Sample {
			w.b.pending = sample.U64(5)
			return w.step(20, 0, 0)
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(time.Second, 3)
			w.b.limit = 128
			d := New(Config{})
			for i := 0; i < 60; i++ {
				d.Observe(w.step(w.noisy(100, 0.2), 0, 0))
			}
			w.capacity = 500
			var evs []Event
			for i := 0; i < 3; i++ {
				_, ev := d.Observe(w.step(20000, 0, 0))
				evs = append(evs, ev...)
			}
			w.capacity, w.queue = 30000, 0
			for i := 0; i < 20; i++ {
				_, ev := d.Observe(tc.after(w))
				evs = append(evs, ev...)
			}
			got := transitions(evs)
			if got[0] != "calm->storm" {
				t.Fatalf("transitions %v: want a storm first", got)
			}
			if held := len(got) == 1; held != tc.wantHeld {
				t.Fatalf("transitions %v: held %v, want %v", got, held, tc.wantHeld)
			}
			if !tc.wantHeld {
				return
			}
			w.b.mitArmed, w.b.noValkey, w.b.abandoned, w.b.pending = false, false, nil, nil
			evs = nil
			for i := 0; i < 40; i++ {
				_, ev := d.Observe(w.step(20, 0, 0))
				evs = append(evs, ev...)
			}
			if got := transitions(evs); len(got) != 2 || got[0] != "storm->recovering" || got[1] != "recovering->calm" {
				t.Errorf("after the refusals stopped: %v, want storm->recovering->calm", got)
			}
		})
	}
}
