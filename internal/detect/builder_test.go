package detect

import (
	"math"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// builder produces a synthetic sample stream with cumulative counters, as
// the sampler would. Tests change its fields between ticks.
type builder struct {
	t      time.Time
	dt     time.Duration
	target string

	// Cumulative counters (floats so fractional rates accumulate).
	passive, vconns, overflows, drops, cookies, rejected float64
	ctDrop, ctEarly, ctInsertFailed, nicConntrack        float64

	// Gauges. depth is the queue at the sample instant (nil: depthMax/2);
	// estab is this port's ESTABLISHED sockets (nil: not counted).
	depthMax, limit, synRecv uint64
	depth, estab             *uint64
	// abandoned is listen.abandoned; pending is handshake_pending (per
	// interval). Nil: not measured.
	abandoned, pending  *uint64
	clients, maxclients uint64
	ctCount, ctMax      uint64
	ping                float64

	// Unavailable sources.
	noTCP, noValkey, noListen, noConntrack bool

	// synStage: drops happen at the SYN queue (ListenDrops only, no
	// ListenOverflows); countsAge is the SYN_RECV count's age (nil: none).
	synStage  bool
	countsAge *float64

	// others is the namespace's other listeners (nil: unknown).
	others *int
	// mitigation: armed by the agent, with its cumulative drop counter.
	mitArmed   bool
	mitDropped float64
	// portDrops is listen.overflows_port, this port's own cumulative drop
	// counter (eBPF); nil: not read.
	portDrops *float64
}

func newBuilder(dt time.Duration) *builder {
	return &builder{
		t:           time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC),
		dt:          dt,
		target:      "127.0.0.1:6379",
		passive:     1_000_000,
		vconns:      50_000,
		limit:       511,
		clients:     50,
		maxclients:  10000,
		ping:        0.2,
		noConntrack: true,
	}
}

func u(f float64) *uint64 { return sample.U64(uint64(math.Floor(f))) }

// tick advances one interval in which newPerSec connections were admitted
// (kernel PassiveOpens and Valkey's accept counter) and dropPerSec were
// dropped at the listen queue, and returns the closing sample.
func (b *builder) tick(newPerSec, dropPerSec float64) *sample.Sample {
	b.t = b.t.Add(b.dt)
	sec := b.dt.Seconds()
	b.passive += newPerSec * sec
	b.vconns += newPerSec * sec
	if !b.synStage {
		b.overflows += dropPerSec * sec
	}
	b.drops += dropPerSec * sec
	s := &sample.Sample{
		Time: b.t, Target: b.target, Port: 6379, IntervalMS: float64(b.dt.Milliseconds()),
		Errors: map[string]string{},
	}
	s.NetNSOtherListeners = b.others
	s.HandshakePending = b.pending
	s.CountsAgeMS = b.countsAge
	if b.mitArmed {
		s.Mitigation = &sample.Mitigation{Armed: 1, Dropped: u(b.mitDropped)}
	}
	if !b.noListen {
		depth := b.depthMax / 2
		if b.depth != nil {
			depth = *b.depth
		}
		s.Listen = &sample.Listen{Depth: sample.U64(depth), DepthMax: sample.U64(b.depthMax), Limit: sample.U64(b.limit), Sockets: 1, Polls: 10}
		s.SynRecv = sample.U64(b.synRecv)
		s.Established = b.estab
		s.Listen.Abandoned = b.abandoned
		if b.portDrops != nil {
			s.Listen.OverflowsPort = u(*b.portDrops)
		}
	}
	if !b.noTCP {
		s.TCP = &sample.TCP{
			PassiveOpens: u(b.passive), ListenOverflows: u(b.overflows), ListenDrops: u(b.drops),
			ReqQFullDoCookies: u(b.cookies), ReqQFullDrop: u(0),
		}
	}
	if !b.noValkey {
		s.Valkey = &sample.Valkey{
			ConnectedClients: sample.U64(b.clients), MaxClients: sample.U64(b.maxclients),
			TotalConnectionsReceived: u(b.vconns), RejectedConnections: u(b.rejected), PingMS: sample.F64(b.ping),
		}
	}
	if !b.noConntrack {
		s.Conntrack = &sample.Conntrack{Count: sample.U64(b.ctCount), Max: sample.U64(b.ctMax), Drop: u(b.ctDrop),
			EarlyDrop: u(b.ctEarly), InsertFailed: u(b.ctInsertFailed), Via: "proc"}
		s.NIC = &sample.NIC{ConntrackAllowanceExceeded: u(b.nicConntrack)}
	}
	return s
}

// run feeds n ticks produced by f(i) and returns all events.
func run(t *testing.T, d *Detector, n int, f func(i int) *sample.Sample) []Event {
	t.Helper()
	var evs []Event
	for i := 0; i < n; i++ {
		st, ev := d.Observe(f(i))
		if !st.Valid() {
			t.Fatalf("tick %d: invalid state %d", i, st)
		}
		evs = append(evs, ev...)
	}
	return evs
}

// warm feeds a calm stream at rate conn/s long enough to learn baselines.
func warm(t *testing.T, d *Detector, b *builder, rate float64, dur time.Duration) {
	t.Helper()
	n := int(dur / b.dt)
	if evs := run(t, d, n, func(int) *sample.Sample { return b.tick(rate, 0) }); len(evs) != 0 {
		t.Fatalf("warm-up at %v conn/s produced events: %+v", rate, evs[0])
	}
}

func transitions(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.From.String()+"->"+e.To.String())
	}
	return out
}

func hasSignal(v View, name string) (Signal, bool) {
	for _, s := range v.Signals {
		if s.Name == name {
			return s, true
		}
	}
	return Signal{}, false
}
