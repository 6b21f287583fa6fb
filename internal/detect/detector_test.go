package detect

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

func TestStateNamesAndCodes(t *testing.T) {
	for _, tc := range []struct {
		s    State
		name string
		code int
	}{{Calm, "calm", 0}, {Surge, "surge", 1}, {Storm, "storm", 2}, {Recovering, "recovering", 3}} {
		if tc.s.String() != tc.name || tc.s.Code() != tc.code {
			t.Errorf("%d: got %q/%d, want %q/%d", tc.s, tc.s, tc.s.Code(), tc.name, tc.code)
		}
		b, err := json.Marshal(tc.s)
		if err != nil || string(b) != `"`+tc.name+`"` {
			t.Errorf("marshal %v: %s %v", tc.s, b, err)
		}
		var back State
		if err := json.Unmarshal(b, &back); err != nil || back != tc.s {
			t.Errorf("unmarshal %s: %v %v", b, back, err)
		}
	}
	if _, err := ParseState("stormy"); err == nil {
		t.Error("ParseState accepted an unknown name")
	}
	if _, err := json.Marshal(State(7)); err == nil {
		t.Error("marshalled an invalid state")
	}
}

// TestQuietStreams: streams that must never leave calm.
func TestQuietStreams(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		dt   time.Duration
		dur  time.Duration
		feed func(b *builder, i int) *sample.Sample
	}{
		{"steady churn 150 conn/s with ±50% noise", time.Second, 15 * time.Minute, func(b *builder, i int) *sample.Sample {
			b.depthMax = uint64(rng.IntN(6))
			return b.tick(150*(0.5+rng.Float64()), 0)
		}},
		{"steady churn 200 conn/s at 250ms, bursty", 250 * time.Millisecond, 5 * time.Minute, func(b *builder, i int) *sample.Sample {
			r := 200 * (0.6 + 0.8*rng.Float64())
			if i%40 == 0 {
				r = 380 // a burst within one interval
			}
			return b.tick(r, 0)
		}},
		{"150 conn/s at 100ms sampling with pool bursts of 80 in 100ms", 100 * time.Millisecond, 5 * time.Minute, func(b *builder, i int) *sample.Sample {
			if i%50 == 0 {
				return b.tick(800, 0) // one app instance fills its pool at once
			}
			return b.tick(150*(0.5+rng.Float64()), 0)
		}},
		{"heavy keepalive, no new connections", time.Second, 10 * time.Minute, func(b *builder, i int) *sample.Sample {
			b.clients, b.ping = 5000, 0.3+0.2*rng.Float64()
			return b.tick(0, 0)
		}},
		{"idle server spikes to 5 conn/s", time.Second, 10 * time.Minute, func(b *builder, i int) *sample.Sample {
			if i > 300 && i < 330 {
				return b.tick(5, 0)
			}
			return b.tick(0.05, 0)
		}},
		{"ping blip of one sample", time.Second, 3 * time.Minute, func(b *builder, i int) *sample.Sample {
			b.ping = 0.2
			if i == 100 {
				b.ping = 900
			}
			return b.tick(20, 0)
		}},
		{"conntrack busy but flat", time.Second, 5 * time.Minute, func(b *builder, i int) *sample.Sample {
			b.noConntrack, b.ctMax = false, 262144
			b.ctCount = 200000 + uint64(rng.IntN(2000))
			return b.tick(100, 0)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(tc.dt)
			d := New(Config{})
			n := int(tc.dur / tc.dt)
			evs := run(t, d, n, func(i int) *sample.Sample { return tc.feed(b, i) })
			if len(evs) != 0 {
				t.Fatalf("got %d events, first: %s: %s", len(evs), transitions(evs), evs[0].Verdict)
			}
		})
	}
}

// TestRampWarnsBeforeOverflow: a storm that ramps up over 6 s must raise
// surge before the first listen overflow, and storm when overflows start.
// The rate alone does not warn (per-request churn and deploys climb too);
// the warning comes once this port's accept queue starts filling while
// connections arrive far above normal, a sample or more before it
// overflows. The model: Valkey accepts at most 2,500/s; the excess
// waits in the accept queue (limit 512) and overflows once it is full.
func TestRampWarnsBeforeOverflow(t *testing.T) {
	for _, dt := range []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, time.Second} {
		t.Run(dt.String(), func(t *testing.T) {
			b := newBuilder(dt)
			b.limit = 512
			d := New(Config{})
			warm(t, d, b, 40, 3*time.Minute)

			const capacity, ramp = 2500.0, 6.0
			var queue float64
			var firstOverflow, surgeAt, stormAt time.Time
			for i := 1; i <= int(12*time.Second/dt); i++ {
				el := float64(i) * dt.Seconds()
				offered := 40 + (4000-40)*min(el/ramp, 1)
				sec := dt.Seconds()
				queue += (offered - capacity) * sec
				dropped := 0.0
				if queue > float64(b.limit) {
					dropped = (queue - float64(b.limit)) / sec
					queue = float64(b.limit)
				}
				queue = max(queue, 0)
				b.depthMax = uint64(queue)
				admitted := offered - dropped
				// Valkey's own counter moves at most at its capacity.
				b.vconns += min(admitted, capacity)*sec - admitted*sec
				s := b.tick(admitted, dropped)
				if dropped > 0 && firstOverflow.IsZero() {
					firstOverflow = s.Time
				}
				_, evs := d.Observe(s)
				for _, e := range evs {
					switch e.To {
					case Surge:
						if surgeAt.IsZero() {
							surgeAt = e.Time
						}
					case Storm:
						if stormAt.IsZero() {
							stormAt = e.Time
						}
					}
				}
			}
			if firstOverflow.IsZero() {
				t.Fatal("model never overflowed")
			}
			if surgeAt.IsZero() {
				t.Fatal("no surge event")
			}
			if lead := firstOverflow.Sub(surgeAt); lead < dt {
				t.Errorf("surge at %s, first overflow at %s: lead %s < one sample", surgeAt, firstOverflow, lead)
			}
			if stormAt.IsZero() || stormAt.Sub(firstOverflow) > dt {
				t.Errorf("storm at %v, want within one sample of the first overflow %v", stormAt, firstOverflow)
			}
		})
	}
}

// TestStormLifecycle: storm → recovering after StormQuiet, → calm after
// CalmQuiet, with evidence on every event.
func TestStormLifecycle(t *testing.T) {
	b := newBuilder(time.Second)
	b.limit = 64
	d := New(Config{})
	warm(t, d, b, 35, 2*time.Minute)
	var evs []Event
	evs = append(evs, run(t, d, 20, func(int) *sample.Sample {
		b.depthMax = 64
		return b.tick(4100, 1230)
	})...)
	evs = append(evs, run(t, d, 60, func(int) *sample.Sample {
		b.depthMax = 1
		return b.tick(35, 0)
	})...)
	want := []string{"calm->storm", "storm->recovering", "recovering->calm"}
	if got := transitions(evs); !slices.Equal(got, want) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
	storm := evs[0]
	for _, sub := range []string{"Connection storm on 127.0.0.1:6379", "accept queue full (64/64)", "1,230 dropped connections/s", "new connections 4,100/s vs 35/s normal"} {
		if !strings.Contains(storm.Verdict, sub) {
			t.Errorf("verdict %q lacks %q", storm.Verdict, sub)
		}
	}
	if !storm.Evidence.AttributedToPort || !slices.Contains(storm.Evidence.PerPort, "accept_queue_full") || !slices.Contains(storm.Evidence.PerPort, "listen_drops") {
		t.Errorf("storm evidence not attributed to the port: %+v", storm.Evidence)
	}
	lastDrop := storm.Time.Add(19 * time.Second) // 20 storm samples, 1 s apart
	if got := evs[1].Time.Sub(lastDrop); got != 5*time.Second {
		t.Errorf("recovering %s after the last drop, want StormQuiet 5s", got)
	}
	if got := evs[2].Time.Sub(lastDrop); got != 30*time.Second {
		t.Errorf("calm %s after the last drop, want CalmQuiet 30s", got)
	}
	ep := evs[2].Evidence.Episode
	if ep == nil || ep.PeakDroppedRate != 1230 || ep.Dropped < 1230*19 {
		t.Errorf("episode summary %+v", ep)
	}
	if !strings.Contains(evs[1].Verdict, "about 24,600 dropped over 20s") {
		t.Errorf("recovering verdict %q", evs[1].Verdict)
	}
	if !strings.Contains(evs[2].Verdict, "calm again") {
		t.Errorf("calm verdict %q", evs[2].Verdict)
	}
}

// TestEventJSONShape: the contract keys and value types.
func TestEventJSONShape(t *testing.T) {
	b := newBuilder(time.Second)
	d := New(Config{})
	warm(t, d, b, 10, time.Minute)
	b.depthMax = 511
	_, evs := d.Observe(b.tick(3000, 500))
	if len(evs) != 1 {
		t.Fatalf("want 1 event, got %d", len(evs))
	}
	raw, err := json.Marshal(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"type": "state", "target": "127.0.0.1:6379", "from": "calm", "to": "storm"} {
		if m[k] != want {
			t.Errorf("%s = %v, want %q", k, m[k], want)
		}
	}
	ts, _ := m["time"].(string)
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		t.Errorf("time %q is not RFC3339Nano: %v", ts, err)
	}
	if r, _ := m["reason"].(string); r == "" {
		t.Error("empty reason")
	}
	if c, _ := m["state_code"].(float64); c != 2 {
		t.Errorf("state_code %v", m["state_code"])
	}
	ev, _ := m["evidence"].(map[string]any)
	for _, k := range []string{"signals", "per_port", "namespace_wide", "view"} {
		if _, ok := ev[k]; !ok {
			t.Errorf("evidence lacks %q: %s", k, raw)
		}
	}
	view, _ := ev["view"].(map[string]any)
	if _, ok := view["new_conn_baseline"].(float64); !ok {
		t.Errorf("view lacks the baseline: %v", view)
	}
}

// TestAttribution covers Principle 0: how namespace-wide drops are treated
// depending on this port's own evidence.
func TestNamespaceAttribution(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(b *builder)
		wantState State
		wantSig   string
		perPort   bool
	}{
		{"overflows, this port's queue full", func(b *builder) { b.depthMax = b.limit }, Storm, "listen_drops", true},
		{"overflows, this port's queue at 60%", func(b *builder) { b.depthMax = b.limit * 6 / 10 }, Storm, "listen_drops", true},
		{"overflows, this port's SYN_RECV high", func(b *builder) { b.synRecv = 300 }, Storm, "listen_drops", true},
		{"overflows, no per-port data", func(b *builder) { b.noListen = true }, Storm, "listen_drops", false},
		{"overflows, this port idle but the namespace's only listener", func(b *builder) { b.depthMax = 3; b.others = new(int) }, Storm, "listen_drops", true},
		{"overflows, this port idle: another listener", func(b *builder) { b.depthMax = 3 }, Calm, "", false},
		// Drops at the SYN queue never fill the accept queue: an idle
		// accept queue cannot contradict them, only a fresh SYN_RECV count.
		{"SYN-queue drops, SYN_RECV count 8 s old", func(b *builder) { b.depthMax, b.synStage, b.countsAge = 0, true, sample.F64(8000) }, Storm, "listen_drops", false},
		{"SYN-queue drops, fresh SYN_RECV low: another listener", func(b *builder) { b.depthMax, b.synStage, b.countsAge = 0, true, sample.F64(300) }, Calm, "", false},
		{"overflows, this port idle, other listeners known", func(b *builder) { b.depthMax = 3; n := 2; b.others = &n }, Calm, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(time.Second)
			d := New(Config{})
			warm(t, d, b, 20, time.Minute)
			tc.setup(b)
			st, evs := d.Observe(b.tick(20, 200))
			if tc.wantState == Calm {
				// Namespace-wide counters never raise a target alone.
				if st != Calm || len(evs) != 0 || len(d.View().Signals) != 0 {
					t.Fatalf("state %v events %d signals %+v, want calm and nothing", st, len(evs), d.View().Signals)
				}
				return
			}
			if st != tc.wantState || len(evs) != 1 {
				t.Fatalf("state %v events %d, want %v and one event", st, len(evs), tc.wantState)
			}
			sig, ok := hasSignal(d.View(), tc.wantSig)
			if !ok {
				t.Fatalf("no %s signal in %+v", tc.wantSig, d.View().Signals)
			}
			if sig.Scope != ScopeNamespace || sig.PerPortEvidence != tc.perPort {
				t.Errorf("signal %+v: want scope namespace, per-port %v", sig, tc.perPort)
			}
			inNS := slices.Contains(evs[0].Evidence.NamespaceWide, tc.wantSig)
			if inNS == tc.perPort {
				t.Errorf("evidence per_port %v namespace_wide %v", evs[0].Evidence.PerPort, evs[0].Evidence.NamespaceWide)
			}
			if !strings.Contains(sig.Text, "namespace-wide") {
				t.Errorf("signal text does not say namespace-wide: %q", sig.Text)
			}
		})
	}
}

// TestNamespaceAttributionQueueAtStart: the poller of a starved agent can
// miss the peak that overflowed; the queue the interval began with (the
// previous sample's instant depth) is still this interval's queue. Drops
// after a sample that saw this port's queue high are this port's; after
// one that saw it low, another listener's.
func TestNamespaceAttributionQueueAtStart(t *testing.T) {
	for _, tc := range []struct {
		start     uint64
		wantStorm bool
	}{{400, true}, {100, false}} {
		t.Run(fmt.Sprintf("queue %d/511 at the start", tc.start), func(t *testing.T) {
			b := newBuilder(time.Second)
			d := New(Config{})
			warm(t, d, b, 20, time.Minute)
			b.depthMax, b.depth = tc.start, sample.U64(tc.start)
			if st, evs := d.Observe(b.tick(20, 0)); st != Calm || len(evs) != 0 {
				t.Fatalf("one sample with the queue at %d: %v %v, want calm", tc.start, st, evs)
			}
			b.depthMax, b.depth = 3, sample.U64(0)
			st, _ := d.Observe(b.tick(20, 200))
			sig, ok := hasSignal(d.View(), "listen_drops")
			if !tc.wantStorm {
				if st != Calm || ok {
					t.Fatalf("state %v signals %+v, want calm: the queue was low", st, d.View().Signals)
				}
				return
			}
			if st != Storm || !ok || !sig.PerPortEvidence {
				t.Fatalf("state %v signal %+v, want storm on per-port evidence", st, sig)
			}
			if want := fmt.Sprintf("held %d/511 as the interval began", tc.start); !strings.Contains(sig.Text, want) {
				t.Errorf("text %q does not say %q", sig.Text, want)
			}
		})
	}
}

// TestStormSignals: every drop/refusal source alone makes a storm with the
// right scope.
func TestStormSignals(t *testing.T) {
	tests := []struct {
		name  string
		bump  func(b *builder)
		sig   string
		scope Scope
	}{
		{"maxclients rejections", func(b *builder) { b.rejected += 50; b.clients = b.maxclients }, "maxclients_rejections", ScopeInstance},
		{"conntrack drops", func(b *builder) { b.ctCount = b.ctMax; b.ctDrop += 400 }, "conntrack_drop", ScopeNamespace},
		{"conntrack insert_failed", func(b *builder) { b.ctInsertFailed += 100 }, "conntrack_insert_failed", ScopeNamespace},
		{"NIC conntrack allowance", func(b *builder) { b.nicConntrack += 9 }, "nic_conntrack_allowance_exceeded", ScopeNIC},
		{"SYNs dropped by stormguard's mitigation", func(b *builder) { b.mitArmed = true; b.mitDropped += 300 }, "mitigation_drops", ScopePort},
		{"accept queue full, drop counters unavailable", func(b *builder) { b.noTCP = true; b.depthMax = b.limit }, "accept_queue_full", ScopePort},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(time.Second)
			b.noConntrack, b.ctMax, b.ctCount = false, 65536, 1000
			d := New(Config{})
			warm(t, d, b, 20, time.Minute)
			if tc.sig == "mitigation_drops" {
				b.mitArmed = true // armed, nothing dropped yet: a first reading
				d.Observe(b.tick(20, 0))
			}
			tc.bump(b)
			st, evs := d.Observe(b.tick(20, 0))
			if st != Storm || len(evs) != 1 {
				t.Fatalf("state %v, %d events; want storm", st, len(evs))
			}
			sig, ok := hasSignal(d.View(), tc.sig)
			if !ok || sig.Level != LevelStorm || sig.Scope != tc.scope {
				t.Fatalf("signal %s = %+v (found %v), want storm/%s; all %+v", tc.sig, sig, ok, tc.scope, d.View().Signals)
			}
			if evs[0].Verdict == "" || !strings.HasPrefix(evs[0].Verdict, "Connection storm on 127.0.0.1:6379") {
				t.Errorf("verdict %q", evs[0].Verdict)
			}
		})
	}
}

// TestSurgeSignals: early warnings without drops.
func TestSurgeSignals(t *testing.T) {
	tests := []struct {
		name  string
		ticks int
		step  func(b *builder, i int) float64 // returns new conn/s
		sig   string
	}{
		// Queue and SYN_RECV warn once they held TrendWindow (two 1 s
		// samples); a rate only with something that puts capacity at risk.
		{"accept queue 70% full", 2, func(b *builder, i int) float64 { b.depthMax = 360; return 100 }, "accept_queue_high"},
		{"accept queue full, nothing dropped yet", 2, func(b *builder, i int) float64 { b.depthMax = b.limit; return 100 }, "accept_queue_full"},
		{"SYN_RECV high", 2, func(b *builder, i int) float64 { b.synRecv = 120; return 100 }, "syn_recv_high"},
		{"SYN cookies with SYN_RECV at the backlog", 1, func(b *builder, i int) float64 { b.cookies += 800; b.synRecv = b.limit; return 100 }, "syn_cookies"},
		{"new connections 5x baseline with clients near maxclients", 1, func(b *builder, i int) float64 { b.clients = 8000; return 500 }, "new_conn_rate"},
		{"conntrack forecast", 11, func(b *builder, i int) float64 {
			b.noConntrack, b.ctMax = false, 100000
			b.ctCount = 40000 + uint64(i)*4000 // 4,000/s: full in 15 s
			return 100
		}, "forecast_conntrack_full"},
		{"maxclients forecast", 11, func(b *builder, i int) float64 {
			b.clients = 3000 + uint64(i)*300 // 300/s towards 10,000: ~20 s
			return 100
		}, "forecast_maxclients"},
		{"conntrack early drop", 1, func(b *builder, i int) float64 {
			b.noConntrack, b.ctMax, b.ctCount = false, 1000, 1000
			b.ctEarly += 30
			return 100
		}, "conntrack_early_drop"},
		{"ping slow while new connections climb", 2, func(b *builder, i int) float64 { b.ping = 400; return 900 }, "ping_slow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(time.Second)
			d := New(Config{})
			warm(t, d, b, 100, 2*time.Minute)
			if tc.name == "conntrack forecast" || tc.name == "conntrack early drop" {
				// Give the conntrack reading one calm sample of history.
				b.noConntrack, b.ctMax, b.ctCount = false, 100000, 40000
				if tc.name == "conntrack early drop" {
					b.ctMax, b.ctCount = 1000, 900
				}
				d.Observe(b.tick(100, 0))
			}
			var evs []Event
			for i := 0; i < tc.ticks; i++ {
				r := tc.step(b, i)
				_, ev := d.Observe(b.tick(r, 0))
				evs = append(evs, ev...)
			}
			if got := transitions(evs); !slices.Equal(got, []string{"calm->surge"}) {
				t.Fatalf("transitions %v, want [calm->surge]; signals %+v", got, d.View().Signals)
			}
			if _, ok := hasSignal(d.View(), tc.sig); !ok {
				t.Fatalf("no %s signal: %+v", tc.sig, d.View().Signals)
			}
			if !strings.Contains(evs[0].Verdict, "No connections dropped yet") {
				t.Errorf("verdict %q", evs[0].Verdict)
			}
		})
	}
}

// TestCounterReset: a Valkey restart (its counters drop to 0) and a kernel
// counter reset must not produce a rate or an alarm.
func TestCounterReset(t *testing.T) {
	b := newBuilder(time.Second)
	d := New(Config{})
	warm(t, d, b, 50, time.Minute)
	b.vconns, b.rejected = 0, 0 // Valkey restarted
	b.passive = 3               // and the netns counters reset too
	st, evs := d.Observe(b.tick(50, 0))
	v := d.View()
	if st != Calm || len(evs) != 0 || len(v.Signals) != 0 {
		t.Fatalf("reset tick: state %v, events %v, signals %+v", st, evs, v.Signals)
	}
	if v.Rates.ValkeyConnections != nil || v.Rates.PassiveOpens != nil {
		t.Errorf("rates across a reset: valkey %v passive %v", v.Rates.ValkeyConnections, v.Rates.PassiveOpens)
	}
	for _, name := range []string{"valkey.total_connections_received", "tcp.passive_opens"} {
		if !slices.Contains(v.Resets, name) {
			t.Errorf("resets %v lack %s", v.Resets, name)
		}
	}
	d.Observe(b.tick(50, 0))
	if r := d.View().Rates.PassiveOpens; r == nil || *r != 50 {
		t.Errorf("rate after reset: %v, want 50", r)
	}
}

// TestNilSignals: unavailable fields are skipped, never read as zero.
func TestNilSignals(t *testing.T) {
	t.Run("missing sources never alarm or panic", func(t *testing.T) {
		for mask := 0; mask < 16; mask++ {
			b := newBuilder(time.Second)
			b.noTCP, b.noValkey, b.noListen, b.noConntrack = mask&1 != 0, mask&2 != 0, mask&4 != 0, mask&8 != 0
			d := New(Config{})
			if evs := run(t, d, 120, func(int) *sample.Sample { return b.tick(30, 0) }); len(evs) != 0 {
				t.Errorf("mask %b: events %v", mask, transitions(evs))
			}
		}
	})
	t.Run("empty samples", func(t *testing.T) {
		d := New(Config{})
		base := time.Unix(1e9, 0)
		for i := 0; i < 100; i++ {
			st, evs := d.Observe(&sample.Sample{Time: base.Add(time.Duration(i) * time.Second)})
			if st != Calm || len(evs) != 0 {
				t.Fatal("empty sample changed state")
			}
		}
		if st, evs := d.Observe(nil); st != Calm || evs != nil {
			t.Fatal("nil sample changed state")
		}
		v := d.View()
		if v.NewConnRate != nil || v.DroppedRate != nil || v.AcceptOccupancy != nil {
			t.Errorf("nil inputs became numbers: %+v", v)
		}
	})
	t.Run("a source missing for one sample: rate over the longer span", func(t *testing.T) {
		b := newBuilder(time.Second)
		d := New(Config{})
		warm(t, d, b, 50, 10*time.Second)
		b.noTCP = true
		d.Observe(b.tick(50, 0))
		if d.View().Rates.PassiveOpens != nil {
			t.Fatal("rate from a missing counter")
		}
		b.noTCP = false
		d.Observe(b.tick(50, 0))
		if r := d.View().Rates.PassiveOpens; r == nil || *r != 50 {
			t.Fatalf("rate after gap = %v, want 50 (100 over 2 s)", r)
		}
	})
	t.Run("Valkey rate with kernel counters missing", func(t *testing.T) {
		b := newBuilder(time.Second)
		b.noTCP = true
		d := New(Config{})
		warm(t, d, b, 50, time.Minute)
		b.clients = 9000 // near maxclients: capacity at risk
		st, _ := d.Observe(b.tick(2000, 0))
		v := d.View()
		if st != Surge || v.NewConnSource != "valkey.total_connections_received" || v.NewConnScope != ScopeInstance {
			t.Errorf("state %v source %q scope %q", st, v.NewConnSource, v.NewConnScope)
		}
	})
}

// TestNoFlapping: noisy inputs must not produce a stream of events.
func TestNoFlapping(t *testing.T) {
	t.Run("intermittent drops", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(7, 7))
		b := newBuilder(time.Second)
		d := New(Config{})
		warm(t, d, b, 100, time.Minute)
		evs := run(t, d, 180, func(int) *sample.Sample {
			if rng.Float64() < 0.25 {
				b.depthMax = b.limit
				return b.tick(3000, 200)
			}
			b.depthMax = 10
			return b.tick(200, 0)
		})
		// Relapses double the quiet time needed (5, 10, 20, 30 s), so a
		// three-minute drizzle of drops is a handful of transitions.
		if len(evs) > 8 {
			t.Errorf("%d transitions in 3 minutes: %v", len(evs), transitions(evs))
		}
		evs = run(t, d, 120, func(int) *sample.Sample { b.depthMax = 0; return b.tick(100, 0) })
		if st, _ := d.State(); st != Calm {
			t.Errorf("did not settle: %v after %v", st, transitions(evs))
		}
	})
	t.Run("new-connection rate hovering at the threshold", func(t *testing.T) {
		b := newBuilder(time.Second)
		d := New(Config{})
		warm(t, d, b, 100, 2*time.Minute) // threshold max(4×100, 400) = 400
		evs := run(t, d, 120, func(i int) *sample.Sample {
			if i%2 == 0 {
				return b.tick(390, 0)
			}
			return b.tick(415, 0)
		})
		if got := transitions(evs); len(got) > 1 {
			t.Errorf("transitions %v, want at most one", got)
		}
	})
}

// TestBaselineLearning: the baseline is not learned in surge, and a rate
// that alone (with a standing reason, here clients near maxclients) holds
// the target in surge for RelearnAfter becomes the new normal.
func TestBaselineLearning(t *testing.T) {
	b := newBuilder(time.Second)
	d := New(Config{RelearnAfter: 2 * time.Minute})
	warm(t, d, b, 100, 2*time.Minute)
	base := *d.View().NewConnBaseline
	b.clients = 8000
	run(t, d, 60, func(int) *sample.Sample { return b.tick(1000, 0) })
	if st, _ := d.State(); st != Surge {
		t.Fatalf("state %v, want surge", st)
	}
	if got := *d.View().NewConnBaseline; got != base {
		t.Errorf("baseline moved during surge: %v → %v", base, got)
	}
	evs := run(t, d, 90, func(int) *sample.Sample { return b.tick(1000, 0) })
	if got := transitions(evs); !slices.Equal(got, []string{"surge->calm"}) {
		t.Fatalf("after RelearnAfter: %v, want surge->calm", got)
	}
	if !strings.Contains(evs[0].Reason, "new normal") {
		t.Errorf("reason %q", evs[0].Reason)
	}
	if got := *d.View().NewConnBaseline; got != 1000 {
		t.Errorf("relearned baseline %v, want 1000", got)
	}
}

func TestBaselineMedianIgnoresOutliers(t *testing.T) {
	bl := newBaseline(10*time.Second, 9, 3)
	t0 := time.Unix(0, 0)
	for i := 0; i < 100; i++ {
		v := 50.0
		if i/10 == 4 { // one whole bucket of a batch job
			v = 5000
		}
		bl.add(t0.Add(time.Duration(i)*time.Second), v)
	}
	got, ok := bl.value()
	if !ok || got != 50 {
		t.Errorf("baseline %v %v, want 50", got, ok)
	}
}

func TestRelapseEscalatesQuiet(t *testing.T) {
	b := newBuilder(time.Second)
	d := New(Config{})
	warm(t, d, b, 20, time.Minute)
	storm := func(n int) []Event {
		return run(t, d, n, func(int) *sample.Sample { b.depthMax = b.limit; return b.tick(3000, 100) })
	}
	quiet := func(n int) []Event {
		return run(t, d, n, func(int) *sample.Sample { b.depthMax = 0; return b.tick(20, 0) })
	}
	var evs []Event
	evs = append(evs, storm(3)...)
	evs = append(evs, quiet(6)...) // → recovering after 5 s
	evs = append(evs, storm(2)...) // relapse
	evs = append(evs, quiet(8)...) // 8 s < 10 s: still storm
	want := []string{"calm->storm", "storm->recovering", "recovering->storm"}
	if got := transitions(evs); !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	if !strings.Contains(evs[2].Verdict, "resumed") {
		t.Errorf("relapse verdict %q", evs[2].Verdict)
	}
	evs = quiet(3)
	if got := transitions(evs); !slices.Equal(got, []string{"storm->recovering"}) {
		t.Errorf("after 11 s quiet: %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero is defaults", Config{}, true},
		{"factor below 1", Config{NewConnFactor: 0.5}, false},
		{"negative duration", Config{StormQuiet: -time.Second}, false},
		{"min buckets above buckets", Config{BaselineBuckets: 2, BaselineMinBuckets: 5}, false},
		{"occupancy above 1", Config{AcceptHighOccupancy: 1.5}, false},
		{"custom sane", Config{NewConnFloor: 1000, CalmQuiet: time.Minute}, true},
	}
	for _, tc := range tests {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if got := New(Config{NewConnFactor: -3}).Config().NewConnFactor; got != 4 {
		t.Errorf("invalid config not replaced by defaults: factor %v", got)
	}
}

func TestFmtN(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 2.5: "2.5", 35: "35", 1230: "1,230", 4100.4: "4,100", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := fmtN(in); got != want {
			t.Errorf("fmtN(%v) = %q, want %q", in, got, want)
		}
	}
}

// TestBlindnessIsNotQuiet: when every drop source stops answering mid-storm,
// the detector must not declare recovery.
func TestBlindnessIsNotQuiet(t *testing.T) {
	b := newBuilder(time.Second)
	d := New(Config{})
	warm(t, d, b, 20, time.Minute)
	run(t, d, 3, func(int) *sample.Sample { b.depthMax = b.limit; return b.tick(3000, 500) })
	b.noTCP, b.noValkey, b.noListen = true, true, true
	if evs := run(t, d, 60, func(int) *sample.Sample { return b.tick(0, 0) }); len(evs) != 0 {
		t.Fatalf("blind samples changed state: %v", transitions(evs))
	}
	b.noTCP, b.noValkey, b.noListen = false, false, false
	b.depthMax = 0
	evs := run(t, d, 7, func(int) *sample.Sample { return b.tick(20, 0) })
	// First sighted sample has no counter deltas yet (the counters were
	// missing): it is blind too; then 5 quiet seconds.
	if got := transitions(evs); !slices.Equal(got, []string{"storm->recovering"}) {
		t.Fatalf("after sight returns: %v", got)
	}
}

// TestRecoveringToSurge: drops stop but the queue stays half full: after
// CalmQuiet the state says surge, not recovering forever.
func TestRecoveringToSurge(t *testing.T) {
	b := newBuilder(time.Second)
	d := New(Config{})
	warm(t, d, b, 20, time.Minute)
	var evs []Event
	evs = append(evs, run(t, d, 3, func(int) *sample.Sample { b.depthMax = b.limit; return b.tick(3000, 100) })...)
	evs = append(evs, run(t, d, 40, func(int) *sample.Sample { b.depthMax = b.limit * 7 / 10; return b.tick(20, 0) })...)
	want := []string{"calm->storm", "storm->recovering", "recovering->surge"}
	if got := transitions(evs); !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	if v := evs[2].Verdict; !strings.Contains(v, "over") || !strings.Contains(v, "accept queue peaked at") {
		t.Errorf("verdict %q", v)
	}
	if evs[2].Evidence.Episode == nil {
		t.Error("no episode summary when leaving recovering")
	}
}

// TestCounterTableComplete: every counter constant has a table entry with
// a unique name, a reader and a rate slot, and the reader finds the
// counter in a full sample.
func TestCounterTableComplete(t *testing.T) {
	b := newBuilder(time.Second)
	b.noConntrack = false
	s := b.tick(1, 1)
	s.TCP.SynRetrans, s.TCP.AttemptFails = sample.U64(1), sample.U64(1)
	s.NIC.PPSAllowanceExceeded = sample.U64(1)
	s.Mitigation = &sample.Mitigation{Armed: 1, Dropped: sample.U64(1)}
	s.Listen.OverflowsPort = sample.U64(1)
	seen := map[string]bool{}
	for i, c := range counterTable {
		if c.name == "" || c.read == nil || c.rate == nil {
			t.Fatalf("counter %d has an empty table entry: %+v", i, c)
		}
		if seen[c.name] {
			t.Errorf("counter name %q listed twice", c.name)
		}
		seen[c.name] = true
		if c.read(s) == nil {
			t.Errorf("%s: not read from a full sample", c.name)
		}
		if c.read(&sample.Sample{}) != nil {
			t.Errorf("%s: read from an empty sample", c.name)
		}
		var r Rates
		*c.rate(&r) = f64(1)
		if raw, _ := json.Marshal(r); strings.Count(string(raw), ":1") != 1 {
			t.Errorf("%s: rate slot is not exactly one Rates field: %s", c.name, raw)
		}
	}
}

// TestBaselineSeededFromStart: a steady level present from the agent's
// start is the baseline within a second, and stays one when the target
// leaves calm before the first bucket closed.
func TestBaselineSeededFromStart(t *testing.T) {
	b := newBuilder(250 * time.Millisecond)
	d := New(Config{})
	run(t, d, 8, func(int) *sample.Sample { return b.tick(1000, 0) })
	base := d.View().NewConnBaseline
	if base == nil || *base < 900 || *base > 1100 {
		t.Fatalf("baseline after 2 s of 1,000/s: %v", base)
	}
	b.depthMax = b.limit // a storm: leave calm
	run(t, d, 2, func(int) *sample.Sample { return b.tick(1000, 500) })
	if st, _ := d.State(); st != Storm || d.View().NewConnBaseline == nil {
		t.Fatalf("state %v baseline %v: want storm with the seeded baseline kept", st, d.View().NewConnBaseline)
	}
}
