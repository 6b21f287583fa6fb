package simulate

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"syscall"
	"time"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/dialer"
	"github.com/stormguard/stormguard/internal/lab"
)

// Strategies the simulator runs: the lab's own strategies, whose code is
// a backoff.Policy or the dialer. The client libraries are not modelled.
var Strategies = []string{"immediate", "fixed", "glide", "full-jitter", "equal-jitter", "decorrelated", "stormguard"}

// Scenarios the simulator runs.
var Scenarios = []string{"kill", "restart", "blip"}

// Limits that keep one run bounded.
const (
	MaxClients = 1_000_000
	maxEvents  = 200_000_000
	// A run may handle eventsPerClient events per client (at least
	// minEvents, at most maxEvents) and hold pendingPerClient events per
	// client (plus minPending) in its queue. A bounded fleet needs far
	// fewer (< 200 handled per client in every scenario and strategy
	// with a delay; a few pending): more is a client that retries
	// faster than the model can follow, such as immediate against
	// refused connects (a redial every RTT: 2,000 clients made 40 M
	// connects per simulated second and 16 GB of pending timeouts
	// before the flat budget stopped them, 150 s later).
	eventsPerClient  = 2000
	minEvents        = 20_000_000
	pendingPerClient = 32
	minPending       = 1 << 20
)

// ErrRunaway is wrapped (with ErrConfig) by the error of a run that
// exceeded its event budget: a strategy that retries in a tight loop.
var ErrRunaway = errors.New("the strategy retries faster than the model can follow")

// Fleet is the client side of a simulation, with the lab's defaults.
type Fleet struct {
	Clients  int
	Strategy string
	// Policy holds the policy settings (backoff.ByName); a zero GLIDE
	// means GLIDE's defaults, as in the lab.
	Policy   backoff.Params
	Scenario string
	// Dialer configures the stormguard strategy's dialer (Now, Rand and
	// DialTimeout are set by the simulator). Zero: the defaults, as the
	// lab runs it.
	Dialer dialer.Options
	// Observe: stormguard instances know connected_clients from before the
	// loss (the lab reads INFO clients); false leaves the fleet size
	// unknown.
	Observe bool
	// ObserveCPU: with Observe, the instances also read the server's CPU
	// times twice before the loss, 2 s apart, and the dialer starts at
	// the rate the server's headroom allows (dialer.ObserveServer); the
	// simulated server's main thread is then busy with the fleet's PINGs,
	// Clients × CmdCost / Period. (The lab's instances read INFO server
	// clients cpu stats: one that connected late has one reading, whose
	// uptime tells the share over the server's life, about the same on
	// the lab's steady server; the model gives every instance the span's.)
	ObserveCPU bool
	// Period between PINGs (100ms), ConnectTimeout (2s), CommandTimeout
	// (1s), Hold before the disruption (6s), Down for restart (1s), Blip
	// (2s), Duration of the observation (30s).
	Period, ConnectTimeout, CommandTimeout, Hold, Down, Blip, Duration time.Duration
	// Seed of every random draw (1).
	Seed uint64
	// BucketPhase is how long before t0 the timeline's first 100 ms
	// bucket starts, within (0, 100 ms]; 0: a seeded draw. A lab run's
	// JSON says where its buckets fell (the first "timeline" point's
	// t_ms): the busiest bucket of a burst shorter than a bucket or two
	// (a kill of 2,000 clients) depends on it, so a check against that
	// run counts the model's connects on the same grid.
	BucketPhase time.Duration
	// pendingMax overrides the run's limit on pending events (tests; 0:
	// minPending + pendingPerClient per client).
	pendingMax int
}

func (f Fleet) withDefaults() Fleet {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&f.Period, 100*time.Millisecond)
	def(&f.ConnectTimeout, 2*time.Second)
	def(&f.CommandTimeout, time.Second)
	def(&f.Hold, 6*time.Second)
	def(&f.Down, time.Second)
	def(&f.Blip, 2*time.Second)
	def(&f.Duration, 30*time.Second)
	if f.Seed == 0 {
		f.Seed = 1
	}
	return f
}

// Validate reports the first thing wrong with f.
func (f Fleet) Validate() error {
	switch {
	case f.Clients < 1 || f.Clients > MaxClients:
		return fmt.Errorf("%w: --clients must be within 1..%d, got %d", ErrConfig, MaxClients, f.Clients)
	case !slices.Contains(Strategies, f.Strategy):
		return fmt.Errorf("%w: strategy %q is not modelled (want one of %v)", ErrConfig, f.Strategy, Strategies)
	case !slices.Contains(Scenarios, f.Scenario):
		return fmt.Errorf("%w: scenario %q is not modelled (want one of %v)", ErrConfig, f.Scenario, Scenarios)
	}
	for _, d := range []time.Duration{f.Period, f.ConnectTimeout, f.CommandTimeout, f.Hold, f.Down, f.Blip, f.Duration} {
		if d < 0 {
			return fmt.Errorf("%w: durations must not be negative", ErrConfig)
		}
	}
	if f.Duration > 10*time.Minute {
		return fmt.Errorf("%w: --duration must be at most 10m", ErrConfig)
	}
	if f.BucketPhase < 0 || f.BucketPhase > lab.Bucket {
		return fmt.Errorf("%w: the bucket phase must be within 0..%s, got %s", ErrConfig, lab.Bucket, f.BucketPhase)
	}
	if _, err := f.policy(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return nil
}

// policy is the per-client policy, as the lab gives it: the backoff
// policy of the strategy's name, Immediate for stormguard (its dialer
// paces).
func (f Fleet) policy() (backoff.Policy, error) {
	if f.Strategy == "stormguard" {
		return backoff.Immediate{}, nil
	}
	p := f.Policy
	if f.Strategy == "glide" && p.GLIDE == (backoff.GLIDE{}) {
		p.GLIDE = backoff.DefaultGLIDE()
	}
	return backoff.ByName(f.Strategy, p)
}

// Result is a simulated storm: the keys of `stormguard storm --json` that
// apply, and the model used.
type Result struct {
	Strategy           string `json:"strategy"`
	Clients            int    `json:"clients"`
	Scenario           string `json:"scenario"`
	ConnectAttempts    int64  `json:"connect_attempts"`
	ConnectFailures    int64  `json:"connect_failures"`
	PeakConnectsPerSec int64  `json:"peak_connects_per_sec"`
	TimeToRecoverMS    *int64 `json:"time_to_recover_ms"`
	Recovered          bool   `json:"recovered"`
	RecoveredClients   int    `json:"recovered_clients"`
	RecoverP50MS       *int64 `json:"recover_p50_ms"`
	FailedCommands     int64  `json:"failed_commands"`
	ListenOverflows    uint64 `json:"listen_overflows"`
	// SyncookiesSent counts the SYNs answered with a cookie because the
	// SYN queue was full (TcpExt SyncookiesSent).
	SyncookiesSent   uint64 `json:"syncookies_sent"`
	AbandonedAccepts int64  `json:"abandoned_accepts"`
	// BacklogDrops counts the retransmitted segments the client host's
	// loopback backlog dropped (Model.NetdevBacklog; softnet_stat's
	// "dropped" column).
	BacklogDrops int64 `json:"backlog_drops"`
	// ServerCPUMS is Valkey's main-thread CPU from t0 to the end of the
	// run, in ms: the kill, every accept and first command, and the
	// established clients' commands (CmdCost each per Period) — what
	// INFO cpu's used_cpu_*_main_thread counts, and the lab's
	// server_cpu_percent × its window.
	ServerCPUMS float64 `json:"server_cpu_ms"`
	// end is when the run ended (every client back, or Duration), and
	// steady Valkey's share of a core busy with established commands
	// then: serverCPUAt extends ServerCPUMS past the end.
	end    time.Duration
	steady float64
	// Timeline is the connects per 100 ms bucket, the first starting a
	// seeded phase of 0–100 ms before t0 (as the lab's buckets fall
	// anywhere around its t0); PeakConnectsPerSec is its busiest bucket.
	Timeline []int64 `json:"timeline_100ms"`
	// FailedTimeline and RecoveredTimeline are the failed commands (a
	// lost connection noticed, a first PING failed) and the clients back
	// (their first PING after t0 answered) per bucket of Timeline's grid:
	// the lab's timeline has both, and a restart's notices wait behind
	// the redials on a one-core client side (docs/benchmarks.md 11f).
	FailedTimeline    []int64 `json:"failed_commands_100ms"`
	RecoveredTimeline []int64 `json:"recovered_100ms"`
	Events            int64   `json:"events"`
	Model             Model   `json:"model"`
}

// Event kinds.
const (
	evStep        = iota // a client's loop runs (dial or wait)
	evDial               // a client calls connect()
	evSynArrive          // the SYN reaches the server
	evSynRetx            // the client's SYN retransmit timer
	evConnTimeout        // the client's connect timeout
	evEstablished        // the SYN-ACK reaches the client
	evAckArrive          // the final ACK reaches the server
	evSynackRetx         // the server's SYN-ACK retransmit timer
	evCycle              // Valkey's event loop turn ends
	evReply              // the first PING's reply reaches the client
	evPingTimeout        // the client's command timeout
	evStable             // the connection stayed up StableAfter
	evDetect             // the client notices the disruption
	evServerUp           // restart: the server is back
	evRefused            // the RST of a server that is down reaches the client
	evDataRetx           // the client retransmits its PING (an ACK too)
	evDialNow            // a dial delayed by the client side's dial rate
	evKillDone           // CLIENT KILL returns: the event loop runs again
	evGenDone            // the client side finished its job in progress
	evKillNext           // CLIENT KILL frees its next client
	evSynDeadline        // the dialer's SYN deadline of an attempt
	evSynRst             // an abandoned attempt's SYN-ACK was answered by RST
	evPingArrive         // the client's first PING (and the ACK it carries) reaches the server
	evExitNext           // restart: the dying server's exit closes its next client connection
	evListenClose        // restart: the exit closes the listener last
	evReset              // a RST from a closed listener reaches a client that saw ESTABLISHED
)

type event struct {
	at   time.Duration
	seq  uint64
	kind uint8
	c    *client
	s    *sock
}

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// Server-side states of a socket.
const (
	srvNone     = iota // no request (SYN not arrived or dropped)
	srvRequest         // SYN answered, final ACK pending or dropped
	srvCookie          // SYN answered with a cookie: the server keeps nothing
	srvQueued          // in the accept queue
	srvAccepted        // accepted by Valkey
	srvGone            // reset or given up
)

// sock is one connect attempt and the connection it becomes.
type sock struct {
	c           *client
	dialAt      time.Duration
	synTries    int
	synackTries int
	srv         uint8
	open        bool // the client still holds it
	connected   bool // the client saw ESTABLISHED
	replied     bool // the client has seen its first PING answered
	answered    bool // the answer reached the client's socket
	pingSent    bool // the client has sent its PING
	pingIn      bool // the PING reached the server's socket
	tls         bool
	// lgen is the listener generation (sim.listenGen) that answered the
	// SYN: a restart's old listener's requests die with it.
	lgen    uint8
	dataRTO time.Duration // the client's next data retransmit timeout
}

// client is one application instance with one connection.
type client struct {
	id       int
	sched    *backoff.Schedule
	d        *dialer.Dialer
	res      *dialer.Reservation
	s        *sock
	proven   bool
	recovAt  time.Duration // 0: not yet
	attempts int
	// connEnd is when the connect timeout ends the dial in progress (its
	// redials after abandoned attempts included); redial: the next
	// connect() is such a redial.
	connEnd time.Duration
	redial  bool
	// closedAt is when the server's close of c's connection reached c's
	// host (a kill's or exit's evDetect): the dialer dates the loss back
	// to it (Reservation.LostAgo), as its Conn does from TCP_INFO.
	closedAt time.Duration
}

type sim struct {
	ctx   context.Context
	m     Model
	f     Fleet
	rng   *rand.Rand
	now   time.Duration
	epoch time.Time
	ev    eventHeap
	seq   uint64

	clients []client
	pol     backoff.Policy
	sg      bool

	// server
	up        bool
	blipUntil time.Duration // a blip drops every packet from 0 to here
	acceptQ   []*sock
	synq      int // request socks pending
	loopBusy  bool
	killed    int // clients CLIENT KILL (or a restart's exit) has freed so far
	// listenGen counts the listeners a restart closed: the request
	// sockets of an older one are reset, not completed.
	listenGen uint8
	pending   []*sock // accepted, first command not yet served
	serving   []*sock // first commands served by the turn in progress
	accepting []*sock // accepted by the turn in progress
	served    int     // clients whose first command was answered (established load)
	// cpu is Valkey's main-thread CPU since t0 (the kill, every loop
	// turn's work) without the established clients' commands, which
	// servedArea (clients × seconds served, up to servedAt) adds.
	cpu        time.Duration
	servedArea float64
	servedAt   time.Duration
	live       int // clients holding a working connection (the client side's steady load)
	share      []float64

	genNext time.Duration // client-side dial pacing
	// tickAt, tickSegs: the retransmit timers' tick now firing and the
	// segments they sent into the loopback backlog (tickSegment).
	tickAt   time.Duration
	tickSegs int
	// phase: the timeline's buckets start phase before t0 (see Run);
	// wheelPhase: where t0 falls on the kernel's timer wheel (wheel.go).
	phase, wheelPhase time.Duration
	// lead is how many 100 ms buckets the timeline has before the
	// seeded phase: a restart's exit runs before t0 (see disrupt).
	lead int
	gen  generator

	res      Result
	timeline []int64
	// failedTL and backTL: Result.FailedTimeline and RecoveredTimeline.
	failedTL, backTL []int64
	recovered        []time.Duration
	events           int64
}

// Run simulates one storm.
func Run(ctx context.Context, m Model, f Fleet) (*Result, error) {
	f = f.withDefaults()
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	m = m.withDefaults()
	pol, _ := f.policy()
	s := &sim{ctx: ctx, m: m, f: f, rng: rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15)),
		epoch: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), pol: pol, sg: f.Strategy == "stormguard", up: true}
	s.res = Result{Strategy: f.Strategy, Clients: f.Clients, Scenario: f.Scenario, Model: m}
	s.timeline = make([]int64, int((f.Duration+time.Second)/lab.Bucket)+1)
	s.failedTL, s.backTL = make([]int64, len(s.timeline)), make([]int64, len(s.timeline))
	// The lab counts connects in 100 ms buckets that start when its
	// recorder did, not at t0: a storm's busiest bucket (the peak connect
	// rate) depends on where the buckets fall, most for a burst shorter
	// than a bucket or two (a kill of 1,000–2,000 clients). So the
	// simulator's buckets start a random phase (0–100 ms, from the seed,
	// drawn apart from the clients' randomness) before t0, as the lab's do.
	// A given phase (a lab run's own) replaces the draw; the draw is
	// made anyway, so the wheel's phase is the seed's either way.
	phases := rand.New(rand.NewPCG(f.Seed, 0x6a09e667f3bcc909))
	s.phase = time.Duration(phases.Int64N(int64(lab.Bucket)))
	if f.BucketPhase > 0 {
		s.phase = f.BucketPhase
	}
	// The wheel's coarsest boundaries that matter here are 256 ms apart
	// (a 4 s SYN retransmit at HZ 250): t0 falls anywhere between them.
	s.wheelPhase = time.Duration(phases.Int64N(int64(time.Second)))
	if err := s.warm(); err != nil {
		return nil, err
	}
	s.disrupt()
	if err := s.loop(); err != nil {
		return nil, err
	}
	s.finish()
	return &s.res, nil
}

// clock is the dialers' Now.
func (s *sim) clock() time.Time { return s.epoch.Add(s.now) }

func (s *sim) at(d time.Duration, kind uint8, c *client, k *sock) {
	s.seq++
	heap.Push(&s.ev, event{at: s.now + d, seq: s.seq, kind: kind, c: c, s: k})
}

// warm gives every client a connection made Hold ago (stable when Hold ≥
// StableAfter, as in the lab), the dialer state included.
func (s *sim) warm() error {
	n := s.f.Clients
	s.clients = make([]client, n)
	s.now = -s.f.Hold
	for i := range s.clients {
		c := &s.clients[i]
		c.id = i
		if s.sg {
			o := s.f.Dialer
			o.Now, o.Rand, o.DialTimeout = s.clock, s.rng, s.f.ConnectTimeout
			o.Dial = nil
			d, err := dialer.New(o)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrConfig, err)
			}
			c.d = d
			r, err := d.Reserve(target)
			if err != nil {
				return err
			}
			_ = r.Dialed(s.m.RTT, nil)
			r.Handshake()
			if st := s.stableAfter(); st >= 0 && st <= s.f.Hold {
				r.Stable()
			}
			if s.f.Observe {
				s.observe(d, n)
			}
			c.res = r
		} else {
			sc, err := backoff.NewSchedule(s.pol, s.rng)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrConfig, err)
			}
			c.sched = sc
		}
		c.s = &sock{c: c, open: true, connected: true, srv: srvAccepted, replied: true, answered: true, pingSent: true, pingIn: true}
		c.proven = true
	}
	s.served, s.live = n, n
	s.now = 0
	return nil
}

const target = "valkey:6379"

// labInfoCost and labInfoEvery: what one INFO clients cpu stats costs
// Valkey's main thread (8.5 µs, docs/lab.md, "What the stormguard
// instances read") and how often a lab instance reads it once it has two
// readings (10 s ± 20%, internal/lab/clients.go). The lab's instances
// read INFO server clients cpu stats since 2026-12-03 15:00 UTC, ~12%
// dearer: ~0.15% more of the thread at 15,000 instances, not modelled.
const (
	labInfoCost  = 8500 * time.Nanosecond
	labInfoEvery = 10 * time.Second
)

// observeSpan is how far apart the two INFO readings of ObserveCPU are
// taken, before the hold.
const observeSpan = 2 * time.Second

// observe tells d what the lab's instances read from INFO before the
// loss: connected_clients, and with ObserveCPU two readings of the main
// thread's CPU, observeSpan apart and ending Hold before the disruption,
// busy with the fleet's PINGs. Called from warm (s.now = -Hold).
func (s *sim) observe(d *dialer.Dialer, n int) {
	if !s.f.ObserveCPU {
		d.ObserveClients(target, n)
		return
	}
	// The main thread's steady work as INFO cpu counts it: the fleet's
	// PINGs and the instances' own INFO reads (the lab's: one per
	// instance about every 10 s, 8.5 µs each; internal/lab/clients.go).
	busy := min(float64(n)*(s.m.CmdCost.Seconds()/s.f.Period.Seconds()+labInfoCost.Seconds()/labInfoEvery.Seconds()), 1)
	now := s.now
	s.now = now - observeSpan
	d.ObserveServer(target, dialer.ServerStats{Clients: n, Connections: int64(n)})
	s.now = now
	cpu := time.Duration(busy * float64(observeSpan))
	d.ObserveServer(target, dialer.ServerStats{Clients: n, CPU: cpu, Connections: int64(n)})
}

// stableAfter is the dialer's StableAfter (-1: at the handshake).
func (s *sim) stableAfter() time.Duration {
	switch v := s.f.Dialer.StableAfter; v {
	case 0:
		return dialer.DefaultStableAfter
	case -1:
		return 0
	default:
		return v
	}
}

// disrupt applies the scenario at t = 0. The lab's clients watch their
// connection between PINGs, as a library's reader does: a kill is noticed
// when the server's close reaches the client (CLIENT KILL frees the
// clients one after another, about one command's work each), a restart
// as the killed server's exit closes each connection (restart: before
// t0); a blip only when the next PING (within one Period) times out.
func (s *sim) disrupt() {
	s.setServed(0) // the established load is the recovered clients'
	switch s.f.Scenario {
	case "kill":
		// CLIENT KILL frees every client in one command, KillCost each:
		// each close reaches its client as it is made; the event loop
		// accepts nothing until the command returns.
		s.loopBusy = true
		s.killNext()
	case "restart":
		s.restart()
		return // each client notices its close as the exit reaches it
	case "blip":
		s.blipUntil = s.f.Blip
	}
	if s.f.Scenario == "kill" {
		return // each client notices its close as the kill reaches it
	}
	for i := range s.clients {
		c := &s.clients[i]
		d := s.m.RTT / 2
		if s.f.Scenario == "blip" {
			d = time.Duration(s.rng.Float64()*float64(s.f.Period)) + s.f.CommandTimeout // the PING times out
		}
		s.at(d, evDetect, c, nil)
	}
}

func (s *sim) loop() error {
	end := s.f.Duration
	n := int64(len(s.clients))
	budget := min(maxEvents, max(minEvents, eventsPerClient*n))
	pendingMax := int(minPending + pendingPerClient*n)
	if s.f.pendingMax > 0 {
		pendingMax = s.f.pendingMax
	}
	for len(s.ev) > 0 {
		e := heap.Pop(&s.ev).(event)
		if e.at > end {
			break
		}
		s.now = e.at
		s.events++
		if s.events%(1<<16) == 0 {
			if err := s.ctx.Err(); err != nil {
				return err
			}
			if s.events > budget || len(s.ev) > pendingMax {
				return fmt.Errorf("%w: %w: %s made %d connect attempts in the first %s (%d events, %d pending); give it a delay after a failed connect",
					ErrConfig, ErrRunaway, s.f.Strategy, s.res.ConnectAttempts, s.now.Round(time.Millisecond), s.events, len(s.ev))
			}
		}
		s.handle(e)
		if len(s.recovered) == len(s.clients) {
			break
		}
	}
	return nil
}

func (s *sim) handle(e event) {
	c, k := e.c, e.s
	switch e.kind {
	case evDetect:
		c.closedAt = s.now
		s.clientJob(c, false)
	case evStep:
		s.step(c)
	case evDial:
		s.clientJob(c, true)
	case evDialNow:
		s.dialNow(c)
	case evSynArrive:
		s.synArrive(k)
	case evSynRetx:
		if k.open && !k.connected {
			s.synRetxTimer(k)
		}
	case evConnTimeout:
		if k.open && !k.connected {
			s.connectFailed(k, errConnectTimeout)
		}
	case evEstablished:
		if k.open && !k.connected {
			s.established(k)
		}
	case evAckArrive:
		if k.open {
			s.ackArrive(k)
		}
	case evSynackRetx:
		if k.lgen != s.listenGen {
			return // the listener is gone: reqsk_timer_handler drops the request
		}
		if k.open && k.srv == srvRequest && k.synackTries < s.m.SynackRetries {
			k.synackTries++
			if s.tickSegment() { // the listener's timers fire on the same CPU's wheel
				s.at(s.m.RTT, evAckArrive, nil, k) // SYN-ACK out, ACK back
			}
			s.at(s.kernelTimer(s.m.synackRTO(k.synackTries+1)), evSynackRetx, nil, k)
		} else if k.srv == srvRequest && k.synackTries >= s.m.SynackRetries {
			k.srv = srvGone
			s.synq--
		}
	case evCycle:
		s.cycle()
	case evReply:
		s.answer(k)
	case evPingArrive:
		s.pingArrive(k)
	case evPingTimeout:
		if k.open && !k.answered {
			s.pingFailed(k, errPingTimeout)
		}
	case evStable:
		if k.open && c.s == k && c.res != nil {
			c.res.Stable()
		}
	case evServerUp:
		s.up = true
		s.loopBusy = false
		s.kick()
	case evExitNext:
		s.exitNext()
	case evListenClose:
		s.listenClose()
	case evReset:
		if k.open && k.connected && !k.replied {
			s.pingFailed(k, errReset)
		} else if k.open && !k.connected {
			s.connectFailed(k, errRefused)
		}
	case evKillNext:
		s.killNext()
	case evKillDone:
		s.loopBusy = false
		s.kick()
	case evGenDone:
		s.genDone()
	case evDataRetx:
		if k.open && (k.srv == srvRequest || k.srv == srvCookie) && !k.replied {
			if s.tickSegment() {
				s.at(s.m.RTT/2, evAckArrive, nil, k)
			}
			k.dataRTO *= 2
			s.at(s.kernelTimer(k.dataRTO), evDataRetx, nil, k)
		}
	case evRefused:
		if k.open && !k.connected {
			s.connectFailed(k, errRefused)
		}
	case evSynDeadline:
		if k.open && !k.connected && k.c.s == k {
			s.abandon(k)
		}
	case evSynRst:
		s.dropRequest(k)
	}
}

// killNext: CLIENT KILL frees the next client (its close reaches the
// client half an RTT later) and goes on to the one after, KillCost of
// Valkey's CPU each — stretched, like an accept turn, by the share of the
// cores the load generator takes while it has work (the lab's kills were
// noticed more slowly while an immediate fleet redialled than while the
// dialer held its fleet back). The event loop accepts nothing until the
// command returns.
func (s *sim) killNext() {
	if s.killed == len(s.clients) {
		s.at(0, evKillDone, nil, nil)
		return
	}
	s.at(s.m.RTT/2, evDetect, &s.clients[s.killed], nil)
	s.killed++
	s.cpu += s.m.KillCost
	s.at(s.stretch(s.m.KillCost), evKillNext, nil, nil)
}

// restart: the server is SIGKILLed. Its exit closes the client
// connections one after another, ExitCost each, and the listener last
// (measured: a SYN sent during the exit is not refused before the last
// close), and the dead process accepts nothing: the SYNs of clients that
// noticed their close and redialled fill the accept queue, the rest
// overflow. The lab marks t0 when the exit is over (it waits for the
// process) and restarts the server Down later; so the exit runs from
// -clients·ExitCost to 0 here, on extra timeline buckets before the
// grid's (the lab's timeline starts before the disruption too). The
// exit is the kernel's work on the dead server's CPU: not Valkey's
// main-thread CPU (Result.ServerCPUMS counts the new server's), and not
// stretched by the host model (measured on the lab's pinned server).
func (s *sim) restart() {
	e := time.Duration(len(s.clients)) * s.m.ExitCost
	s.now = -e
	if e > s.phase { // enough whole buckets before the grid's first to hold the exit
		s.lead = int((e - s.phase + lab.Bucket - 1) / lab.Bucket)
	}
	s.loopBusy = true
	s.exitNext()
	s.at(e, evListenClose, nil, nil)
	s.at(e+s.f.Down, evServerUp, nil, nil)
}

// exitNext: the dying server's exit closes its next client connection
// (the close reaches the client half an RTT later).
func (s *sim) exitNext() {
	if s.killed == len(s.clients) {
		return
	}
	s.at(s.m.RTT/2, evDetect, &s.clients[s.killed], nil)
	s.killed++
	s.at(s.m.ExitCost, evExitNext, nil, nil)
}

// listenClose: the exit closes the listener (inet_csk_listen_stop): the
// connections in its accept queue are reset, and its request sockets
// die with it (a segment for one is answered by RST: listenGen). Then
// SYNs are refused until the server is back.
func (s *sim) listenClose() {
	s.up = false
	s.listenGen++
	s.synq = 0
	for _, k := range s.acceptQ {
		s.reset(k)
	}
	s.acceptQ = nil
}

// reset: the server side of k is gone and answers with RST: a client
// that saw ESTABLISHED sees its connection reset.
func (s *sim) reset(k *sock) {
	s.unrequest(k)
	k.srv = srvGone
	if k.open {
		s.at(s.m.RTT/2, evReset, nil, k)
	}
}

// dropRequest: the server forgets k's request socket, if it has one.
func (s *sim) dropRequest(k *sock) {
	if k.srv == srvRequest {
		s.unrequest(k)
		k.srv = srvGone
	}
}

// unrequest takes k's request socket out of the SYN queue, if it is in
// the current listener's.
func (s *sim) unrequest(k *sock) {
	if k.srv == srvRequest && k.lgen == s.listenGen {
		s.synq--
	}
}

// blipped tells whether a blip drops packets now (a restart's exit
// runs before 0, when nothing is blipped).
func (s *sim) blipped() bool { return s.now >= 0 && s.now < s.blipUntil }

// kernelTimer is the delay until a kernel timer armed now for d fires
// (the timer wheel's tick, wheel.go).
func (s *sim) kernelTimer(d time.Duration) time.Duration {
	return wheelDelay(s.now, s.wheelPhase, d, s.m.HZ)
}

// tcpRTOMin is Linux's TCP_RTO_MIN: the first data retransmit on a
// fast path.
const tcpRTOMin = 200 * time.Millisecond

var (
	// errConnectTimeout is a timeout as net.Dialer's is (a net.Error
	// whose Timeout() is true): the dialer tells timeouts from closes.
	errConnectTimeout = timeoutErr{op: "connect"}
	errRefused        = fmt.Errorf("connect: %w", syscall.ECONNREFUSED)
	errPingTimeout    = timeoutErr{op: "read"}
	errEOF            = errors.New("EOF")
	errReset          = errors.New("read: connection reset by peer")
)

type timeoutErr struct{ op string }

func (e timeoutErr) Error() string { return e.op + ": i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// lose: the client noticed the disruption (EOF, or its PING's timeout in
// a blip): a failed command, the connection closed, a redial.
func (s *sim) lose(c *client) {
	s.res.FailedCommands++
	s.count(s.failedTL)
	s.live--
	err, ago := error(errEOF), s.now-c.closedAt
	if s.f.Scenario == "blip" {
		err, ago = errPingTimeout, 0 // a timeout leaves the kernel no close to date
	}
	if c.res != nil {
		c.res.LostAgo(err, ago)
		c.res = nil
	}
	c.s.open = false
	c.s = nil
	s.step(c)
}

// sleep schedules c's next loop step after d.
func (s *sim) sleep(c *client, d time.Duration) { s.at(d, evStep, c, nil) }

// step is one turn of the lab's rawClient loop with no connection: dial
// (through the dialer's decision for stormguard).
func (s *sim) step(c *client) {
	if c.d == nil {
		s.at(0, evDial, c, nil)
		return
	}
	r, err := c.d.Reserve(target)
	if err != nil { // breaker open: the application's next command comes later
		s.sleep(c, lab.ErrorPace)
		return
	}
	c.res = r
	s.at(r.Wait, evDial, c, nil)
}

// dial: the client calls connect(); the client side's dial rate, if
// capped, delays the call.
func (s *sim) dial(c *client) {
	if r := s.m.ClientDialRate; r > 0 {
		at := max(s.now, s.genNext)
		s.genNext = at + time.Duration(float64(time.Second)/r)
		if at > s.now {
			s.at(at-s.now, evDialNow, c, nil)
			return
		}
	}
	s.dialNow(c)
}

// count adds one to tl's bucket of now (the connects' grid).
func (s *sim) count(tl []int64) {
	t := s.now + s.phase
	b := int(t / lab.Bucket)
	if t < 0 && t%lab.Bucket != 0 {
		b-- // floor: a restart's exit runs before t0
	}
	if b += s.lead; b >= 0 && b < len(tl) {
		tl[b]++
	}
}

// trimZeros is tl without its trailing zero buckets.
func trimZeros(tl []int64) []int64 {
	last := len(tl) - 1
	for last >= 0 && tl[last] == 0 {
		last--
	}
	return tl[:last+1]
}

// dialNow makes the connect attempt: counted, SYN out, timeout armed.
func (s *sim) dialNow(c *client) {
	s.res.ConnectAttempts++
	s.count(s.timeline)
	k := &sock{c: c, dialAt: s.now, open: true, tls: s.m.TLS}
	c.s = k
	c.attempts++
	s.sendSyn(k)
	if !c.redial {
		c.connEnd = s.now + s.f.ConnectTimeout
	}
	c.redial = false
	s.at(max(c.connEnd-s.now, 0), evConnTimeout, nil, k)
	if c.res != nil && c.res.Deadline > 0 {
		s.at(c.res.Deadline, evSynDeadline, nil, k)
	}
}

// abandon: the dialer's SYN deadline passed without a SYN-ACK; the
// client closes the SYN_SENT socket and redials when the dialer says,
// within the same connect timeout. The server keeps what it has of the
// attempt: its SYN was dropped (the overflow was counted then), or, if
// it sits in the SYN queue, the SYN-ACK reaches a closed socket and
// the RST that answers it frees the request. The lab counts the
// abandoned connect() as a failed dial.
func (s *sim) abandon(k *sock) {
	c := k.c
	k.open = false
	c.s = nil
	s.res.ConnectFailures++
	if k.srv == srvRequest {
		s.at(s.m.RTT, evSynRst, nil, k)
	}
	c.redial = true
	s.at(c.res.Abandon(), evDial, c, nil)
}

func (s *sim) sendSyn(k *sock) {
	s.at(s.m.RTT/2, evSynArrive, nil, k)
	s.armSynRetx(k)
}

// armSynRetx arms the SYN's next retransmit timer, if it has one left.
func (s *sim) armSynRetx(k *sock) {
	if k.synTries < s.m.SynRetries {
		s.at(s.kernelTimer(s.m.synRTO(k.synTries+1)), evSynRetx, nil, k)
	}
}

// synRetxTimer: the client's SYN retransmit timer fired. The timer
// re-arms itself and sends the SYN into the CPU's backlog, where a
// tick's retransmits beyond NetdevBacklog are dropped (tickSegment); a
// SYN that is not goes through the client side's CPU (synRetx).
func (s *sim) synRetxTimer(k *sock) {
	k.synTries++
	s.armSynRetx(k)
	if s.tickSegment() {
		s.clientRun(genJob{c: k.c, k: k, kind: jobSynRetx})
	}
}

// synRetx: the client side's CPU got to a retransmitted SYN: it reaches
// the server (generator.go: on loopback the retransmit's handshake runs
// in the connecting CPU's softirq, as a connect()'s does, ahead of the
// goroutines).
func (s *sim) synRetx(k *sock) {
	if k.open && !k.connected {
		s.at(s.m.RTT/2, evSynArrive, nil, k)
	}
}

// tickSegment counts a segment a retransmit timer sends now and tells
// whether the loopback backlog takes it: the timers of one tick of the
// wheel fire together (the model's kernelTimer gives them one instant)
// and NET_RX drains the backlog only after them, so beyond
// NetdevBacklog (0: no limit) of one tick's segments are dropped.
func (s *sim) tickSegment() bool {
	if s.m.NetdevBacklog <= 0 {
		return true
	}
	if s.now != s.tickAt {
		s.tickAt, s.tickSegs = s.now, 0
	}
	s.tickSegs++
	if s.tickSegs > s.m.NetdevBacklog {
		s.res.BacklogDrops++
		return false
	}
	return true
}

// synArrive is tcp_conn_request, in its order: a full SYN queue
// (inet_csk_reqsk_queue_is_full) first — without cookies the SYN is
// dropped there, with cookies it is answered with one (want_cookie) —
// then a full accept queue drops it (LISTENOVERFLOWS) either way. A
// cookie's SYN-ACK leaves no request socket (reqsk_free once sent): no
// SYN queue entry and no SYN-ACK timer; the connection exists on the
// server only once an ACK carrying the cookie finds room
// (cookie_v4_check).
func (s *sim) synArrive(k *sock) {
	if !k.open || k.connected || k.srv != srvNone {
		return
	}
	cookie := false
	switch {
	case s.blipped():
		return // dropped by the blip
	case !s.up:
		s.at(s.m.RTT/2, evRefused, nil, k) // RST
		return
	case s.m.synqFull(s.synq) && !s.m.Syncookies:
		return // SYN queue full, no cookies: dropped (TCPReqQFullDrop)
	case s.m.acceptFull(len(s.acceptQ)):
		s.res.ListenOverflows++
		return

	case s.m.synqFull(s.synq):
		cookie = true
	}
	s.at(s.m.RTT/2, evEstablished, nil, k)
	s.at(s.m.RTT, evAckArrive, nil, k)
	k.lgen = s.listenGen
	if cookie {
		k.srv = srvCookie
		s.res.SyncookiesSent++
		return
	}
	k.srv = srvRequest
	s.synq++
	s.at(s.kernelTimer(s.m.synackRTO(1)), evSynackRetx, nil, k)
}

// ackArrive: the final ACK (or a retransmitted SYN-ACK's ACK, or a data
// segment's). With a cookie there is no request to keep: an ACK that
// finds the accept queue full is dropped (tcp_v4_syn_recv_sock counts
// the overflow; cookie_v4_check sends no reset, abort_on_overflow or
// not) and only the client's next data retransmit tries again.
func (s *sim) ackArrive(k *sock) {
	if k.srv != srvRequest && k.srv != srvCookie {
		return
	}
	if s.blipped() {
		return
	}
	if k.lgen != s.listenGen {
		s.reset(k) // the listener that answered the SYN is gone: RST
		return
	}
	if s.m.acceptFull(len(s.acceptQ)) {
		s.res.ListenOverflows++
		if s.m.AbortOnOverflow && k.srv == srvRequest {
			k.srv = srvGone
			s.synq--
			if k.open && k.connected && !k.replied {
				s.pingFailed(k, errReset)
			}
		}
		return // silently dropped: the SYN-ACK timer (no cookie) or the client's data retransmits resend
	}
	// A connection completed after the client sent its PING has it (the
	// PING, or its retransmit, carried the completing ACK; a bare ACK to
	// a SYN-ACK retransmit is followed by the PING's next retransmit).
	k.pingIn = k.pingIn || k.pingSent
	if k.srv == srvRequest {
		s.synq--
	}
	k.srv = srvQueued
	s.acceptQ = append(s.acceptQ, k)
	s.kick()
}

// kick starts an event-loop turn if the loop is idle and has work.
func (s *sim) kick() {
	if s.loopBusy || (len(s.acceptQ) == 0 && len(s.pending) == 0) {
		return
	}
	s.loopBusy = true
	per := s.m.MaxNewConnsPerCycle
	if s.m.TLS {
		per = s.m.MaxNewTLSConnsPerCycle
	}
	// This turn serves the first commands of the last turn's accepts and
	// accepts up to per connections from the queue (they leave it now).
	s.serving, s.pending = s.pending, s.serving[:0]
	n := min(per, len(s.acceptQ))
	s.accepting = append(s.accepting[:0], s.acceptQ[:n]...)
	s.acceptQ = s.acceptQ[n:]
	if len(s.acceptQ) == 0 {
		s.acceptQ = nil
	}
	s.at(s.turn(n, len(s.serving)), evCycle, nil, nil)
}

// turn is how long a loop turn that accepts n connections and serves p
// first commands takes: its work, stretched by the established clients'
// commands (each sends one per Period).
func (s *sim) turn(n, p int) time.Duration {
	cost := s.m.ConnCost
	if s.m.TLS {
		cost += s.m.TLSCost
	}
	work := s.m.CycleCost + time.Duration(n)*cost + time.Duration(p)*s.m.CmdCost
	s.cpu += work
	u := min(float64(s.served)*s.m.CmdCost.Seconds()/s.f.Period.Seconds(), 0.95)
	// ... and by the share of the cores the host leaves Valkey (host.go).
	return s.stretch(time.Duration(float64(work) / (1 - u)))
}

// cycle ends one loop turn: the commands it served are answered, its
// accepts wait for the next turn to read their first command.
func (s *sim) cycle() {
	for _, k := range s.serving {
		if k.open && !k.replied {
			s.at(s.m.RTT/2, evReply, nil, k)
		}
	}
	s.serving = s.serving[:0]
	for _, k := range s.accepting {
		k.srv = srvAccepted
		if !k.open {
			s.res.AbandonedAccepts++
			continue
		}
		if k.pingIn {
			s.pending = append(s.pending, k)
		} // else its PING is still on the way: pingArrive queues it
	}
	s.accepting = s.accepting[:0]
	s.loopBusy = false
	s.kick()
}

// established: the SYN-ACK reached the client's socket: connect() is
// done, and the client sends PING when its goroutine runs (through the
// client side's queue, generator.go).
func (s *sim) established(k *sock) {
	k.connected = true
	s.clientRun(genJob{c: k.c, k: k, kind: jobConnected})
}

// sendPing: the client's connect() returned (it tells its dialer) and it
// sends its first PING.
func (s *sim) sendPing(k *sock) {
	if !k.open || k.c.s != k {
		return
	}
	c := k.c
	k.pingSent = true
	if c.res != nil {
		_ = c.res.Dialed(s.now-k.dialAt, nil)
	}
	s.at(s.f.CommandTimeout, evPingTimeout, nil, k)
	// The PING carries an ACK too: if the final ACK was dropped on a full
	// accept queue, the PING (when the client gets to send it) and every
	// retransmit of it (RTO 200ms, doubling) try again to create the
	// server's socket.
	s.at(s.m.RTT/2, evPingArrive, nil, k)
	k.dataRTO = tcpRTOMin
	s.at(s.kernelTimer(k.dataRTO), evDataRetx, nil, k)
}

// pingArrive: the first PING reaches the server: it completes a request
// socket whose final ACK was dropped (if the accept queue has room), and
// an accepted connection's first command is served by the next turn.
func (s *sim) pingArrive(k *sock) {
	if !k.open {
		return
	}
	if k.pingIn {
		return // a retransmit got it there first
	}
	k.pingIn = true
	switch k.srv {
	case srvRequest, srvCookie:
		s.ackArrive(k)
	case srvAccepted:
		if !k.replied && !k.answered {
			s.pending = append(s.pending, k)
			s.kick()
		}
	}
}

// answer: the PING's answer reached the client's socket; the client
// reads it when its goroutine runs.
func (s *sim) answer(k *sock) {
	if !k.open || k.answered {
		return
	}
	k.answered = true
	s.clientRun(genJob{c: k.c, k: k, kind: jobReply})
}

// connectFailed: connect() returned an error (timeout, refused); the
// client closes the socket and waits as its strategy says.
func (s *sim) connectFailed(k *sock, err error) {
	c := k.c
	k.open = false
	s.res.ConnectFailures++
	s.dropRequest(k)
	if c.s == k {
		c.s = nil
	}
	if c.res != nil {
		_ = c.res.Dialed(s.now-k.dialAt, err)
		c.res = nil
		s.sleep(c, lab.ErrorPace) // the lab paces the dialer's errors
		return
	}
	s.sleep(c, c.sched.Failure())
}

// pingFailed: no reply within CommandTimeout, or a reset.
func (s *sim) pingFailed(k *sock, err error) {
	c := k.c
	s.res.FailedCommands++
	s.count(s.failedTL)
	k.open = false
	s.dropRequest(k)
	if c.s == k {
		c.s = nil
	}
	if c.res != nil {
		c.res.Lost(err)
		c.res = nil
	}
	if !c.proven {
		if c.sched != nil {
			s.sleep(c, c.sched.Failure())
		} else {
			s.sleep(c, 0)
		}
		return
	}
	s.step(c)
}

// reply: the first PING after the disruption succeeded.
func (s *sim) reply(k *sock) {
	if !k.open || k.replied {
		return
	}
	k.replied = true
	c := k.c
	s.setServed(s.served + 1)
	s.live++
	if c.res != nil {
		c.res.Handshake()
		if st := s.stableAfter(); st > 0 {
			s.at(st, evStable, c, k)
		}
	}
	c.proven = true
	if c.sched != nil {
		c.sched.Reset()
	}
	if c.recovAt == 0 {
		c.recovAt = s.now
		s.recovered = append(s.recovered, s.now)
		s.count(s.backTL)
	}
}

// serverCPUAt is Valkey's main-thread CPU from t0 to t, in ms: the run's,
// and after its end the established clients' commands.
func (r *Result) serverCPUAt(t time.Duration) float64 {
	return r.ServerCPUMS + max(t-r.end, 0).Seconds()*r.steady*1000
}

// setServed changes the established load, integrating the old one.
func (s *sim) setServed(n int) {
	s.servedArea += float64(s.served) * (s.now - s.servedAt).Seconds()
	s.served, s.servedAt = n, s.now
}

// serverCPU is Valkey's main-thread CPU from t0 to now.
func (s *sim) serverCPU() time.Duration {
	area := s.servedArea + float64(s.served)*(s.now-s.servedAt).Seconds()
	return s.cpu + time.Duration(area*float64(s.m.CmdCost)/s.f.Period.Seconds())
}

func (s *sim) finish() {
	r := &s.res
	r.ServerCPUMS = float64(s.serverCPU()) / float64(time.Millisecond)
	r.end, r.steady = s.now, float64(s.served)*s.m.CmdCost.Seconds()/s.f.Period.Seconds()
	last := len(s.timeline) - 1
	for last > 0 && s.timeline[last] == 0 {
		last--
	}
	r.Timeline = s.timeline[:last+1]
	r.FailedTimeline, r.RecoveredTimeline = trimZeros(s.failedTL), trimZeros(s.backTL)
	var peak int64
	for _, v := range r.Timeline {
		peak = max(peak, v*int64(time.Second/lab.Bucket))
	}
	r.PeakConnectsPerSec = peak
	r.RecoveredClients = len(s.recovered)
	r.Events = s.events
	need := int(math.Ceil(lab.RecoverQuantile * float64(len(s.clients))))
	times := slices.Clone(s.recovered)
	slices.Sort(times)
	if len(times) >= need && need > 0 {
		ms := max(times[need-1].Milliseconds(), 1)
		r.TimeToRecoverMS = &ms
		r.Recovered = true
	}
	if len(times) > 0 {
		p50 := times[(len(times)-1)/2].Milliseconds()
		r.RecoverP50MS = &p50
	}
}
