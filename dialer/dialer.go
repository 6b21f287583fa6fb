package dialer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Dialer dials with per-target rate limits, backoff and circuit breaking
// shared by everything in the process that uses it. Make one with New and
// share it; it is safe for concurrent use.
type Dialer struct {
	o Options

	// restartFactor: see defaultRestartFactor. A field, not Options: the
	// tests of the rule set it; users have nothing to tune there.
	restartFactor float64

	mu      sync.Mutex
	targets map[string]*target
}

// breakerState of a target.
type breakerState int

const (
	breakerClosed breakerState = iota
	breakerOpen
	breakerHalfOpen
)

func (s breakerState) String() string {
	return [...]string{"closed", "open", "half-open"}[s]
}

// target is the per-address state. Guarded by Dialer.mu.
type target struct {
	addr      string
	limiter   *rate.Limiter // nil = unlimited
	firstSeen time.Time
	handshook bool // some connection ever completed a handshake
	// lostAt is when a connection to the target was last lost or failed;
	// dials in the reconnect window after it are spread over the window.
	lostAt time.Time
	// soft: the episode since lostAt has seen only timeouts, which a
	// slow or loaded server causes as well as a fleet-wide outage; its
	// window is at most ReconnectWindow until a close or reset by the
	// server (or congestion) says more.
	soft bool
	// observed is the server's connected_clients last reported through
	// ObserveClients or ObserveServer (0 = none).
	observed int
	// server is what INFO readings (ObserveServer) told about the
	// server's load; tls: the target was dialled over TLS
	// (DialTLSContext), whose admission cost ConnectCost does not cover.
	server serverState
	tls    bool
	// rate is the learned admission rate (0: startRate): cut by
	// WindowGrowth on congestion, raised by AcceptRate/2 after a clean
	// episode (AIMD). floor is the smallest window after congestion
	// (minGrowth, for tiny fleets), cleared by a clean connect.
	// congestedIn and raisedIn are the lostAt of the episode in which the
	// target last met congestion and last raised the rate.
	// cutAt is when the rate was last cut.
	rate                  float64
	floor                 time.Duration
	congestedIn, raisedIn time.Time
	cutAt                 time.Time
	// refusedAt is when a refusal last started the episode again, and
	// retryAt when its retry is due (see refused). refusingSince is the
	// first refusal since the target last proved healthy: how long the
	// server has been refusing bounds the refused retry's backoff (see
	// refusedBound).
	refusedAt, retryAt time.Time
	refusingSince      time.Time
	// retries are the retry times of refused dials that no dial has
	// taken yet, ascending (see refused, admit): a pool's connections
	// each keep their own. drawn is the episode the first refusal started
	// again, whose draws the refused dials of a pool still place
	// themselves among.
	retries []time.Time
	drawn   episodeDraws
	// srtt and rttvar smooth the target's connect times (0: none seen
	// yet); abandons counts attempts abandoned since the last completed
	// connect. They set the SYN deadline (syn.go).
	srtt, rttvar time.Duration
	abandons     int

	// credits is how many of the target's connections lost in the
	// current reconnect episode have not been redialled yet: a dial
	// admitted inside the episode takes one instead of a rate-limit
	// token (see takeCredit). Cleared when an episode starts or is found
	// over.
	credits int

	failures  int // consecutive failures since proven health (backoff; see fail)
	prevDelay time.Duration
	nextDial  time.Time
	failedAt  time.Time // when a failure last counted (see fail)

	breaker    breakerState
	brFailures int // consecutive failures since the last handshake (breaker)
	openUntil  time.Time
	probes     int

	stats Stats
}

// Stats are a target's counters, for tests, logs and metrics.
type Stats struct {
	// Dials is the number of network dials started.
	Dials int
	// DialFailures is the number of those that failed.
	DialFailures int
	// Overloads counts maxclients replies, handshake EOF/reset/timeout
	// and ReportOverload calls.
	Overloads int
	// Refused counts dials refused without network I/O (breaker, backoff
	// or rate limit past the context deadline).
	Refused int
	// Healthy counts connections that proved healthy (backoff resets).
	Healthy int
	// Failures is the current consecutive-failure count the backoff
	// policy sees: failures of attempts admitted together count once.
	Failures int
	// Breaker is "closed", "open" or "half-open".
	Breaker string
	// NextDial is the earliest time the backoff allows a new dial.
	NextDial time.Time
	// Window is the current reconnect window (0 when disabled).
	Window time.Duration
	// SlowConnects counts connects that took at least SlowConnect.
	SlowConnects int
	// AcceptRate is the learned admission rate (connections/s) that
	// sizes the window for a known fleet.
	AcceptRate float64
	// CreditDials counts dials that replaced a connection lost in a
	// reconnect episode and so took a credit instead of a rate-limit
	// token (see Options.Rate).
	CreditDials int
	// AbandonedDials counts connect attempts abandoned at their SYN
	// deadline and redialled (each is also one of Dials).
	AbandonedDials int
	// SilentCuts counts connect attempts cut without a SYN-ACK before the
	// kernel's SYN retransmit in an episode of timeouts (each is also one
	// of DialFailures; see "An episode of timeouts" in docs/backoff.md).
	SilentCuts int
	// SYNDeadline is the SYN deadline learned for the target (0: none),
	// which attempts get inside a reconnect episode.
	SYNDeadline time.Duration
	// StartRate is the admission rate the target's episodes start from
	// until congestion or clean episodes change it: AcceptRate, or the
	// rate the server's INFO told (ObserveServer).
	StartRate float64
	// ServerBusy is the share of the server's main thread busy with
	// anything but admitting connections, from the last two INFO
	// readings, or from one over the server's uptime until there were
	// two (-1: not known).
	ServerBusy float64
	// NoticeLag is how long before this process noticed it the loss that
	// started the target's last reconnect episode reached the kernel (the
	// server's FIN, from TCP_INFO on Linux; 0: noticed at once, or not
	// known), at most a quarter of the episode: the episode was dated back
	// by it.
	NoticeLag time.Duration
}

// New returns a Dialer, or an error wrapping one of the option sentinel
// errors.
func New(o Options) (*Dialer, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Dialer{o: o, restartFactor: defaultRestartFactor, targets: make(map[string]*target)}, nil
}

// minGrowth is the smallest window a congestion signal grows to: a tiny
// window computed for a small fleet must not take many doublings to
// matter.
const minGrowth = 100 * time.Millisecond

// rate is t's learned admission rate: the starting rate (AcceptRate, or
// what the server's INFO told: startRate) until the target's episodes
// teach otherwise (see congestion and raise), within [AcceptRate / 2^10,
// MaxAcceptRate]. Called with mu held.
func (d *Dialer) rate(t *target) float64 {
	if t.rate == 0 {
		return d.startRate(t)
	}
	return t.rate
}

// window is t's reconnect window: the fleet (FleetSize, or the observed
// connected_clients) divided by the learned admission rate when the fleet
// is known, else ReconnectWindow scaled by the starting rate over the
// learned rate, at least the floor a congestion signal set, capped at
// MaxReconnectWindow. Called with mu held.
func (d *Dialer) window(t *target) time.Duration {
	return d.windowAs(t, d.restarted(t), t.soft)
}

// windowAs is t's window for an episode that a refusal started again or
// not (restarted) and that timeouts alone began or not (soft); window
// passes t's own. Called with mu held.
func (d *Dialer) windowAs(t *target, restarted, soft bool) time.Duration {
	if d.o.ReconnectWindow == -1 {
		return 0
	}
	scale := d.startRate(t) / d.rate(t)
	base := time.Duration(float64(d.o.ReconnectWindow) * scale)
	if fleet := d.fleet(t); fleet > 0 {
		sized := time.Duration(float64(fleet) / d.fleetRate(t, restarted) * float64(time.Second))
		if !soft || sized < base {
			base = sized
		}
	}
	return min(max(base, t.floor), d.o.MaxReconnectWindow)
}

// defaultRestartFactor: an episode a refused connect started again (see
// refused) spreads the fleet at this many times the learned rate, when
// that rate is the one the server told (see fleetRate). 1 since
// 2026-12-04, when it was 1.5: at 1.5 the lab's restarts of 6,000
// clients overflowed 197–785 times in 6 of 6 runs (a lightly loaded old
// server tells a high rate, and the new one stalls as its descriptor
// table doubles); at 1 they overflowed 28–43 times in 3 of 3 and every
// restart pair met (docs/benchmarks.md 8u, 8v).
const defaultRestartFactor = 1.0

// restarted: t's episode was started again by a refused connect. Called
// with mu held.
func (d *Dialer) restarted(t *target) bool {
	return !t.refusedAt.IsZero() && t.lostAt.Equal(t.refusedAt)
}

// fleetRate is the rate a fleet-sized window spreads the fleet at: the
// learned rate, or restartFactor times it (at most MaxAcceptRate; 1 by
// default, so the learned rate) in an episode a refused connect started
// again (restarted), when the rate is the one the server told (INFO
// readings, plaintext, ConnectCost not -1).
//
// A refusal says nothing listens: the server the refused clients come
// back to is a new process. It has no lost fleet to tear down, which
// argued for a faster rate (1.5× until 2026-12-04), but it grows its
// descriptor table while the fleet returns and stalls at each doubling
// (docs/backoff.md, "A restarted server"), and the old server's busy
// share, which sets the rate, is lower the smaller the fleet: at 6,000
// clients 1.5× came to 13,000–17,000 connects/s and overflowed in every
// lab run. The factor is kept, and its tests run at 1.5, so the rule can
// be measured again. The refused clients' retries take it only after the
// episode's own draws have ended (see refused), so it is not added to
// the rate of clients still drawing from the kill-shaped window. Cuts
// apply to it as to the learned rate (it is a multiple of it); a TLS
// target keeps the learned rate (a handshake costs a new server ~30×
// more). Called with mu held.
func (d *Dialer) fleetRate(t *target, restarted bool) float64 {
	r := d.rate(t)
	if !restarted || !d.serverTold(t) {
		return r
	}
	return max(min(r*d.restartFactor, d.o.MaxAcceptRate), r)
}

// fleet is the fleet's connection count as far as t knows: the observed
// connected_clients, else FleetSize, else 0. Called with mu held.
func (d *Dialer) fleet(t *target) int {
	if t.observed > 0 {
		return t.observed
	}
	return d.o.FleetSize
}

// minRateFraction bounds how far congestion can cut the learned rate
// (AcceptRate / 1024): far below any window MaxReconnectWindow allows.
const minRateFraction = 1.0 / 1024

// congestion cuts t's learned admission rate by WindowGrowth (1.5), which
// grows its window by as much: a failure, an overload or a slow connect
// says the fleet arrives faster than the server admits. The cut applies
// at once, to this episode's remaining dials, and stays for the next
// episodes until clean ones raise it again.
//
// An attempt whose dial started before the last cut does not cut again
// (TCP reduces its window once per loss event, not once per lost packet):
// a pool whose connections all fail in the same storm has met one
// congestion event, and cutting once per connection would send a
// 100-connection process to MaxReconnectWindow at once. One client's
// successive attempts each start after the previous failure, so each of
// its failures counts. started zero (a ReportOverload) always cuts.
// Called with mu held.
func (d *Dialer) congestion(t *target, started time.Time) {
	if d.o.ReconnectWindow == -1 || !started.IsZero() && started.Before(t.cutAt) {
		return
	}
	t.cutAt = d.o.Now()
	t.rate = max(d.rate(t)/d.o.WindowGrowth, d.o.AcceptRate*minRateFraction)
	t.congestedIn = t.lostAt
	if d.window(t) < minGrowth {
		t.floor = minGrowth
	}
	d.emit(t, EventWindow, d.window(t), nil)
}

// clean records a connect that was fast and got its handshake: the
// server kept up, so the floor a congestion signal set goes. Called with
// mu held.
func (d *Dialer) clean(t *target) {
	t.floor = 0
}

// raise records a connection that connected fast and then proved healthy
// (StableAfter): once per reconnect episode that saw no congestion at
// this target, the learned admission rate rises by AcceptRate/2, up to
// MaxAcceptRate (additive increase). A fleet whose reconnects go cleanly
// dials faster next time; one that meets congestion slows down at once
// (congestion: multiplicative decrease). Connections made outside an
// episode (the first connect, a pool growing) teach nothing about how
// fast the server admits a fleet. Called with mu held.
func (d *Dialer) raise(t *target) {
	if t.lostAt.IsZero() || t.raisedIn.Equal(t.lostAt) || t.congestedIn.Equal(t.lostAt) {
		return
	}
	t.raisedIn = t.lostAt
	t.rate = min(d.rate(t)+d.o.AcceptRate/2, d.o.MaxAcceptRate)
	d.emit(t, EventWindow, d.window(t), nil)
}

// lateNoticeShare is the most of an episode's span a late-read loss
// dates the episode back (see markLoss). Clients that read their loss
// late draw from what is left of the window, so the rest of it runs
// faster than the window's rate: with lags spread evenly up to a share s
// of the episode, by (1/s) × ln(1/(1 − s)) — 1.15× at a quarter, 1.39×
// at a half. At a half, simulate (slow notices, a fast kill) and the lab
// (15,000 clients) saw overflows main's dialer did not have; at a quarter
// simulate saw none, and a quarter of a 15,000-client episode (~0.55 s)
// still covers most of the lab's notice lag.
const lateNoticeShare = 0.25

// markLoss records a loss or failure at now. It starts a reconnect
// episode unless one is under way: the losses and failed redials of one
// event (a fleet losing its connections at once, the redials that then
// fail) share one window anchored at the first loss. A failure inside
// the window grows it (congestion) and so stretches the episode's end,
// which slows the dials still to come; it does not restart the window at
// the failure, which would send every failed client to the back of a
// new, longer window and leave the server idle while the last of them
// wait (the long recovery tails of the first fleet-sized dialer). Called
// with mu held.
//
// err says what was lost. A close or reset by the server (EOF, RST, a
// refused connect, a maxclients rejection) is what a restart, failover or
// CLIENT KILL does to the whole fleet at once: the window is sized for the
// fleet. A timeout alone is ambiguous — a loaded server answering late
// looks the same to one client — so an episode of timeouts keeps the
// smaller ReconnectWindow; its failures still grow the window
// (congestion), so a real outage (a blip: the redials time out too) still
// spreads the fleet, while a slow server does not cost every client that
// timed out a fleet-sized wait (at 10,000 lab clients that wait turned
// load-induced timeouts into a steady reconnect storm).
//
// ago is how long before now the kernel had the loss (the server's FIN:
// closedAgo), 0 if unknown. An episode starts that much earlier, at most
// lateNoticeShare of its span: the window is the fleet's, and the fleet
// lost its connections when the server closed them, not when each
// process got round to reading the EOF. A process short of CPU — the
// lab's 15,000 client goroutines on one core — reads its losses over
// 0.4–1.0 s after a CLIENT KILL; counted from each notice, the fleet's last dials came
// that much after the window's end. Counted from the close, a client that
// noticed late draws from what is left of the window, as a retry does,
// and the fleet still ends with the window. The bound keeps a client
// that noticed very late (a pooled connection read only when next used)
// spread over most of the episode rather than dialling at once, and
// bounds how much the late readers crowd the rest of the window (see
// lateNoticeShare).
func (d *Dialer) markLoss(t *target, now time.Time, err error, ago time.Duration) {
	soft := isTimeout(err)
	if !d.inEpisode(t, now) {
		t.lostAt, t.soft = now, soft
		t.credits = 0 // the last episode's expire with it
		t.retries = nil
		t.stats.NoticeLag = 0
		if ago > 0 {
			ago = min(ago, time.Duration(lateNoticeShare*float64(d.span(t))))
			t.lostAt = now.Add(-ago)
			t.stats.NoticeLag = ago
		}
		return
	}
	if !soft {
		t.soft = false
	}
}

// inEpisode: a reconnect episode of t is under way at now (a loss or
// failure happened less than the episode's span ago). Called with mu
// held.
func (d *Dialer) inEpisode(t *target, now time.Time) bool {
	return !t.lostAt.IsZero() && now.Before(t.lostAt.Add(d.span(t)))
}

// span is how long t's episode lasts from its first loss: the window plus
// half the ramp (see ramp); for an episode a refusal started again, the
// refused client's retry (which may come later than one window after
// the refusal, see refused) plus half the ramp. Called with mu held.
func (d *Dialer) span(t *target) time.Duration {
	w := d.window(t)
	if d.restarted(t) {
		w = max(w, t.retryAt.Sub(t.lostAt))
	}
	return w + d.ramp(t)/2
}

// ramp is how long after the episode's first loss the dials' density
// takes to reach the window's rate: the fleet's connections ×
// DisconnectCost, the time the server spends tearing down the
// connections it lost (Valkey frees each client on its main thread and
// accepts nothing meanwhile; CLIENT KILL of 15,000 clients takes ~0.7 s).
// A dial in that time waits in a full accept queue or overflows it. The
// density rises linearly from 0 over the ramp and is flat after it, so
// few clients dial while the server is still busy, and the episode is
// only half the ramp longer than the window (opening the window after
// the whole teardown cost the full ramp). At most the window itself.
// Only for an episode begun by a close or reset with the fleet size
// known; an episode of timeouts (soft) has none. Called with mu held.
func (d *Dialer) ramp(t *target) time.Duration {
	if d.o.ReconnectWindow == -1 || t.soft || d.o.DisconnectCost == -1 {
		return 0
	}
	return min(time.Duration(d.fleet(t))*d.o.DisconnectCost, d.window(t))
}

// drawIn returns a point of t's episode at or after offset a (from the
// episode's first loss), drawn from the episode's density: rising
// linearly over the ramp r, then flat to the end (r/2 + w). The density
// restricted to [a, end) is what a dial retried inside the episode draws
// from, so the fleet's remaining dials stay spread to the end. Called with
// mu held.
func drawIn(a, r, w time.Duration, u float64) time.Duration {
	return drawBetween(a, r/2+w, r, w, u)
}

// drawShare is the share of an episode's draws (density rising over the
// ramp r, then flat to r/2 + w) that fall before offset a. Called with mu
// held.
func drawShare(a, r, w time.Duration) float64 {
	if w <= 0 {
		return 1
	}
	x, rs, ws := a.Seconds(), r.Seconds(), w.Seconds()
	switch {
	case x <= 0:
		return 0
	case x <= rs:
		return x * x / (2 * rs * ws)
	}
	return min((x-rs/2)/ws, 1)
}

// drawBetween is drawIn restricted to [a, b): the episode's density
// between the two offsets, continued flat past the episode's end (a
// redial after an abandoned attempt near the end spreads over its whole
// range instead of crowding into what is left of the episode). Called
// with mu held.
func drawBetween(a, b, r, w time.Duration, u float64) time.Duration {
	rs, ws := r.Seconds(), w.Seconds()
	cdf := func(x float64) float64 {
		if x <= rs && rs > 0 {
			return x * x / (2 * rs * ws)
		}
		return (x - rs/2) / ws
	}
	inv := func(p float64) float64 {
		if p*ws <= rs/2 {
			return math.Sqrt(2 * rs * p * ws)
		}
		return p*ws + rs/2
	}
	from := cdf(max(a.Seconds(), 0))
	to := max(cdf(max(b.Seconds(), 0)), from)
	x := inv(from + u*(to-from))
	return min(max(time.Duration(x*float64(time.Second)), a), max(b, a))
}

// ObserveClients reports the server's connected_clients (INFO clients)
// as seen by the application while the target was healthy. The count
// sizes the reconnect window for the next loss: connected_clients /
// AcceptRate, so that a fleet of unknown size still reconnects at a rate
// the server admits. 0 forgets the observation.
func (d *Dialer) ObserveClients(addr string, clients int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.target(addr).observed = max(clients, 0)
}

// target returns addr's state, creating it. Called with mu held.
func (d *Dialer) target(addr string) *target {
	t, ok := d.targets[addr]
	if !ok {
		t = &target{addr: addr, firstSeen: d.o.Now()}
		if d.o.Rate != -1 {
			t.limiter = rate.NewLimiter(rate.Limit(d.o.Rate), d.o.Burst)
		}
		d.targets[addr] = t
	}
	return t
}

// emit calls OnEvent. Called with mu held.
func (d *Dialer) emit(t *target, kind EventKind, delay time.Duration, err error) {
	if d.o.OnEvent == nil {
		return
	}
	d.o.OnEvent(Event{Time: d.o.Now(), Target: t.addr, Kind: kind, Delay: delay, Failures: t.failures, Err: err})
}

// Stats returns a snapshot of addr's counters (zero if never dialled).
func (d *Dialer) Stats(addr string) Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.targets[addr]
	if !ok {
		return Stats{Breaker: breakerClosed.String()}
	}
	s := t.stats
	s.Failures, s.Breaker, s.NextDial, s.Window, s.AcceptRate = t.failures, t.breaker.String(), t.nextDial, d.window(t), d.rate(t)
	s.SYNDeadline = d.learnedDeadline(t)
	s.StartRate, s.ServerBusy = d.startRate(t), -1
	if t.server.known {
		s.ServerBusy = t.server.busy
	}
	return s
}

// DialContext dials addr on network, subject to the target's breaker,
// backoff, first-connect jitter and rate limit. The returned net.Conn is a
// *Conn.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d.dial(ctx, network, addr, nil)
}

// DialTLSContext is DialContext followed by a TLS handshake with cfg. A
// handshake that ends in EOF, reset or timeout is reported as overload:
// Valkey at maxclients closes TLS connections without a reply.
func (d *Dialer) DialTLSContext(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
	return d.dial(ctx, network, addr, cfg)
}

func (d *Dialer) dial(ctx context.Context, network, addr string, tlsCfg *tls.Config) (net.Conn, error) {
	if tlsCfg != nil {
		d.mu.Lock()
		d.target(addr).tls = true
		d.mu.Unlock()
	}
	admitted := d.o.Now()
	t, probe, wait, drawnIn, err := d.admit(addr)
	if err != nil {
		return nil, err
	}
	credit := d.takeCredit(t)
	release := func() {
		d.mu.Lock()
		if probe {
			t.probes--
		}
		if credit {
			d.refundCredit(t)
		}
		d.mu.Unlock()
	}
	if wait > 0 {
		due := d.o.Now().Add(wait)
		if err := sleep(ctx, wait, d.o.Now); err != nil {
			release()
			d.refuse(t)
			return nil, fmt.Errorf("%w: %s: next dial in %s: %w", ErrBackingOff, addr, wait.Round(time.Millisecond), err)
		}
		// Not counted in EventDial's Delay: how late the process woke
		// is the scheduler's, not the dialer's decision.
		d.respread(ctx, d.o.Now().Sub(due))
	}
	waited := wait
	if t.limiter != nil && !credit {
		r := t.limiter.ReserveN(d.o.Now(), 1)
		if dl := r.Delay(); dl > 0 {
			if err := sleep(ctx, dl, d.o.Now); err != nil {
				r.Cancel()
				release()
				d.refuse(t)
				return nil, fmt.Errorf("%w: %s: %w", ErrRateLimited, addr, err)
			}
			waited += dl
		}
	}

	d.mu.Lock()
	d.emit(t, EventDial, waited, nil)
	d.mu.Unlock()
	dctx := ctx
	if d.o.DialTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, d.o.DialTimeout)
		defer cancel()
	}
	raw, first, last, err := d.connect(dctx, t, network, addr)
	c := &Conn{Conn: raw, d: d, t: t, probe: probe, credit: credit, sniff: !d.o.DisableSniff, started: first, admitted: admitted, drawnIn: drawnIn}
	if err := c.dialed(d.o.Now().Sub(last), err); err != nil {
		return nil, fmt.Errorf("dialer: dial %s: %w", addr, err)
	}
	if tlsCfg == nil {
		return c, nil
	}
	// Sniff inside TLS: the wrapper must see plaintext replies.
	c.sniff = false
	tc := tls.Client(c.Conn, tlsCfg)
	if err := tc.HandshakeContext(dctx); err != nil {
		c.lostBeforeHandshake(err)
		_ = c.Close()
		return nil, fmt.Errorf("dialer: TLS handshake with %s: %w", addr, err)
	}
	c.Conn, c.sniff = tc, !d.o.DisableSniff
	return c, nil
}

// admit applies the breaker and computes how long the dial must wait;
// drawnIn is the episode (its lostAt) whose window the dial drew its
// time from, zero if none.
func (d *Dialer) admit(addr string) (t *target, probe bool, wait time.Duration, drawnIn time.Time, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t = d.target(addr)
	now := d.o.Now()
	if d.o.BreakerThreshold != -1 {
		if t.breaker == breakerOpen {
			if now.Before(t.openUntil) {
				t.stats.Refused++
				err := fmt.Errorf("%w: %s for another %s", ErrCircuitOpen, addr, t.openUntil.Sub(now).Round(time.Millisecond))
				d.emit(t, EventRefused, 0, err)
				return nil, false, 0, time.Time{}, err
			}
			t.breaker = breakerHalfOpen
			d.emit(t, EventBreakerHalf, 0, nil)
		}
		if t.breaker == breakerHalfOpen {
			if t.probes >= d.o.HalfOpenProbes {
				t.stats.Refused++
				err := fmt.Errorf("%w: %s: half-open, %d probe(s) in flight", ErrCircuitOpen, addr, t.probes)
				d.emit(t, EventRefused, 0, err)
				return nil, false, 0, time.Time{}, err
			}
			// A probe ignores the backoff: the open period was its wait.
			t.probes++
			return t, true, 0, time.Time{}, nil
		}
	}
	if now.Before(t.nextDial) {
		wait = t.nextDial.Sub(now)
	}
	if w := d.o.FirstConnectWindow; w > 0 && !t.handshook && now.Before(t.firstSeen.Add(w)) {
		at := t.firstSeen.Add(time.Duration(d.o.Rand.Float64() * float64(w)))
		wait = max(wait, at.Sub(now))
	}
	if w := d.window(t); w > 0 && d.inEpisode(t, now) {
		// A whole fleet lost its connections at lostAt (restart, failover,
		// CLIENT KILL, a blip): land somewhere in what is left of the
		// window, not all at once. A dial retried after a failure inside
		// the window draws from the rest of the (grown) window, so the
		// fleet's remaining dials stay spread evenly to its end. After a
		// refusal the retry comes when refused set it.
		// A pool's redials take the refused dials' retry times in
		// order, each once; a dial finding none takes the latest.
		at := t.retryAt
		switch {
		case !d.restarted(t):
			at = t.lostAt.Add(drawIn(now.Sub(t.lostAt), d.ramp(t), w, d.o.Rand.Float64()))
			drawnIn = t.lostAt
		case len(t.retries) > 0:
			at, t.retries = t.retries[0], t.retries[1:]
		}
		wait = max(wait, at.Sub(now))
	} else {
		t.retries = nil // the episode is over
	}
	return t, false, wait, drawnIn, nil
}

// dialed records the outcome of c's TCP connect, which took took: a
// failure backs the target off; a slow connect (its SYN was dropped and
// retransmitted) grows the window.
func (c *Conn) dialed(took time.Duration, err error) error {
	d, t := c.d, c.t
	d.mu.Lock()
	defer d.mu.Unlock()
	t.stats.Dials++
	if err != nil {
		t.stats.DialFailures++
		c.done = true
		if isRefused(err) && !c.probe {
			d.refused(t, err, c)
			c.settleCredit()
			return err
		}
		d.failLocked(t, EventDialFailed, err, c.probe, c.started, c.admitted)
		c.probe = false
		c.settleCredit()
		return err
	}
	d.emit(t, EventConnected, took, nil)
	d.observeConnect(t, took)
	if d.o.SlowConnect > 0 && took >= d.o.SlowConnect {
		c.slow = true
		t.stats.SlowConnects++
		d.emit(t, EventSlowConnect, took, nil)
		d.congestion(t, c.started)
	}
	return nil
}

// refused records a connect refused by the server's kernel (a reset to
// the SYN: nothing listens, e.g. a restart under way). It is a failure:
// the target backs off (the backoff policy's delay, but at most half of
// how long the target has been refusing: refusedBound), and the retry
// comes no sooner than below. But it is not congestion and does not
// count towards the breaker: a refusal
// costs the server nothing (no accept queue, no Valkey CPU) and says it
// is down for now, not that it admits too slowly or fails the clients it
// admits. Growing the window on it sent a restarting fleet's refused
// clients to the back of ever longer windows (a 10,000-client restart
// in the lab took 1.9× as long as redialling at once); counting it
// towards the breaker opened the circuit for BreakerOpenFor on a server
// that was down for one second (2,000 clients: 5.9 s instead of 2.2 s
// in simulate). A probe's refusal still reopens the circuit.
//
// And it starts the episode's window again at the refusal: the server is
// down, so the window that was to spread the fleet's dials over its
// admission rate has to begin when it can admit them. Drawing the retry
// from what was left of the old window instead crowded every client
// refused while the server was down into the rest of it (a 10,000-client
// restart in the lab: 1,793 overflows, 10× fewer than immediate only);
// restarting it keeps the fleet's density at the window's rate and the
// episode ends at most one window after the server is back.
//
// The retry keeps the client's place in the fleet. A client refused
// again and again while the server is down retries exactly one window
// after each refusal, not at a uniform point of the new window: the
// fleet's attempts then run at the window's rate (N / window) with the
// phases its first draws gave it. A uniform point waits half a window
// on average, so the fleet's attempts ran at twice the rate by the time
// the server was back: the lab's restarts of 15,000 clients overflowed in
// that surge (300–551 at fixed rates of 10,000–20,000/s, 2026-12-03).
//
// A client refused for the first time while its episode's draws are
// still coming (the server went down during the reconnect window, or
// with the fleet: a restart) retries after those draws end, at the place
// its draw had among them: the episode's end plus its draw's share of
// the episode (drawShare) times the restarted window. The clients that
// draw after the server is back then come at the rate they drew, and the
// refused ones follow in their order instead of adding to that rate:
// one window after the refusal, as before, put the refused clients of
// the ramp's first half on top of the last draws. In the flat part of an
// episode at the learned rate the two are the same time. The restarted
// window is sized by fleetRate: the refused clients come back to a new
// process. c is the refused dial's Conn. Called with mu held.
func (d *Dialer) refused(t *target, err error, c *Conn) {
	now := d.o.Now()
	// The first refusal inside an episode whose draws are still to come:
	// where this client's draw fell among the fleet's (the share of the
	// episode's density before now), and when the draws end. Another
	// connection of the process (a pool) refused on its draw in the same
	// episode places itself among those draws as well, as a client alone
	// would: one retry time for the pool put its connections refused
	// early behind its last refusal, all at once.
	first := !d.restarted(t) && d.inEpisode(t, now)
	var rank float64
	var end time.Time
	switch {
	case first:
		t.drawn = episodeDraws{lostAt: t.lostAt, end: t.lostAt.Add(d.span(t)), ramp: d.ramp(t), window: d.window(t)}
		fallthrough
	case d.restarted(t) && !c.drawnIn.IsZero() && c.drawnIn.Equal(t.drawn.lostAt) && now.Before(t.drawn.end):
		rank = drawShare(now.Sub(t.drawn.lostAt), t.drawn.ramp, t.drawn.window)
		end = t.drawn.end
	}
	if t.refusingSince.IsZero() {
		t.refusingSince = now
	}
	// The bound's floor is the restarted window: with no window
	// (ReconnectWindow -1) it would be half of a few microseconds of
	// refusals, a refused client retrying at once, so the policy alone
	// paces it, as before the bound.
	f := failure{started: c.started, admitted: c.admitted}
	if w := d.windowAs(t, true, false); w > 0 {
		f.bounded, f.bound = true, refusedBound(now.Sub(t.refusingSince), w)
	}
	d.fail(t, EventDialFailed, err, f)
	t.lostAt, t.soft = now, false
	t.refusedAt = now
	w := d.window(t) // the restarted episode's (fleetRate)
	// Placed among the episode's draws, or (refused again: the server is
	// still down, or a dial that did not draw in the episode) one
	// restarted window later, never before the retries already placed.
	at := now.Add(w)
	if !end.IsZero() {
		at = end.Add(time.Duration(rank * float64(w)))
	} else if at.Before(t.retryAt) {
		at = t.retryAt
	}
	if first {
		t.retries = t.retries[:0]
	}
	if first || at.After(t.retryAt) {
		t.retryAt = at
	}
	if len(t.retries) < maxRetries {
		i, _ := slices.BinarySearchFunc(t.retries, at, time.Time.Compare)
		t.retries = slices.Insert(t.retries, i, at)
	}
}

// maxRetries bounds the retry times a target keeps (see refused): far
// above any pool; the dials beyond take the latest.
const maxRetries = 4096

// episodeDraws is an episode's draws as the first refusal in it found
// them: when it began and its draws end, its ramp and window.
type episodeDraws struct {
	lostAt, end  time.Time
	ramp, window time.Duration
}

func (d *Dialer) refuse(t *target) {
	d.mu.Lock()
	t.stats.Refused++
	d.emit(t, EventRefused, 0, nil)
	d.mu.Unlock()
}

// failLocked records one failure of target t: the whole target backs off,
// the window grows and the breaker counts it. Called with mu held.
func (d *Dialer) failLocked(t *target, kind EventKind, err error, probe bool, started, admitted time.Time) {
	d.fail(t, kind, err, failure{probe: probe, grow: true, breaker: true, started: started, admitted: admitted})
}

// failure says how a failure counts.
type failure struct {
	probe   bool // the attempt held a half-open probe slot
	grow    bool // a congestion signal: grow the window (see Conn.lostYoung)
	breaker bool // counts towards opening the breaker (see refused)
	// started is when the failed attempt's dial started (zero: unknown);
	// see congestion. admitted is when the dialer admitted it (Reserve,
	// DialContext), which may be long before it started (its draw in
	// the window); see fail.
	started, admitted time.Time
	// bounded: the backoff delay is at most bound (a refusal: see
	// refusedBound).
	bounded bool
	bound   time.Duration
	// ago: the failure is a lost connection whose close the kernel had
	// this long before now (see markLoss).
	ago time.Duration
}

// fail records one failure of target t. Called with mu held.
//
// The backoff counts a failure, and draws a delay for it, only when the
// failed attempt was admitted (Reserve, DialContext) after the last
// counted failure: attempts admitted together and failing one after the
// other are one failure of the target, as congestion cuts once per
// event. A pool's 100 connections lost together draw their dials in the
// window at once; refused one by one while the server restarted, they
// counted 100 failures: the policy's delay reached its cap (10 s) in one
// outage, and since the whole target waits for the latest delay drawn
// (nextDial), every client of the process waited about as long as the
// longest of those draws (lab, 60 processes of 100 clients, restart:
// whole processes back 2.5–9 s after the server; docs/backoff.md,
// "Pools"). One client's successive attempts are each admitted after its
// previous failure, so each still counts. No attempt (a ReportOverload)
// always counts. The breaker still counts every failure: counting it
// once per event as well let a pooled fleet through a 5 s blip reconnect
// without ever opening the circuit, and ~2% of it had not recovered 30 s
// later in 2 of 2 lab runs (docs/benchmarks.md 8w).
func (d *Dialer) fail(t *target, kind EventKind, err error, f failure) {
	now := d.o.Now()
	counts := f.admitted.IsZero() || !f.admitted.Before(t.failedAt)
	d.markLoss(t, now, err, f.ago)
	if f.grow {
		d.congestion(t, f.started)
	}
	d.emit(t, kind, 0, err)
	if counts {
		t.failures++
		t.failedAt = now
		delay := d.o.Backoff.Delay(t.failures, t.prevDelay, d.o.Rand)
		if f.bounded {
			delay = min(delay, f.bound)
		}
		t.prevDelay = delay
		if next := now.Add(delay); next.After(t.nextDial) {
			t.nextDial = next
		}
		d.emit(t, EventBackoff, delay, nil)
	}
	if d.o.BreakerThreshold == -1 {
		return
	}
	if f.probe {
		t.probes--
		t.breaker = breakerOpen
		t.openUntil = now.Add(d.o.BreakerOpenFor)
		d.emit(t, EventBreakerOpen, d.o.BreakerOpenFor, err)
		return
	}
	if !f.breaker {
		return
	}
	t.brFailures++
	if t.breaker == breakerClosed && t.brFailures >= d.o.BreakerThreshold {
		t.breaker = breakerOpen
		t.openUntil = now.Add(d.o.BreakerOpenFor)
		d.emit(t, EventBreakerOpen, d.o.BreakerOpenFor, err)
	}
}

// ReportOverload tells the dialer that target addr is overloaded (a
// maxclients reply, a handshake EOF) as seen by code outside the dialer.
// The whole target backs off and the breaker counts a failure.
func (d *Dialer) ReportOverload(addr string, err error) {
	if err == nil {
		err = errors.New("overload reported")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.target(addr)
	t.stats.Overloads++
	d.failLocked(t, EventOverload, err, false, time.Time{}, time.Time{})
}

// lateWake is how late a timer may fire before respread spreads the dial
// again: well above a healthy runtime's timer slack.
const lateWake = 20 * time.Millisecond

// respread waits a uniform part of late, how late the process woke from
// the wait before a dial, and returns how long it waited. A process
// starved of CPU — a cgroup throttled for the rest of its quota period,
// a long GC pause, or 15,000 lab clients on the server's 2 cores — fires
// every timer that fell due meanwhile at once, and the dials the window
// spread over the stall hit the server in one burst that a 128-slot
// accept queue does not absorb (the lab saw 14,000–18,000 connects/s in
// 100 ms buckets while the window asked for 8,000/s). Spreading each late
// dial over the next stall's length turns that burst back into a rate.
// It gives up (dials at once) when the context ends first.
func (d *Dialer) respread(ctx context.Context, late time.Duration) time.Duration {
	if late < lateWake {
		return 0
	}
	d.mu.Lock()
	extra := time.Duration(d.o.Rand.Float64() * float64(late))
	d.mu.Unlock()
	if sleep(ctx, extra, d.o.Now) != nil {
		return 0
	}
	return extra
}

// sleep waits for d, or fails at once if ctx's deadline comes first, or
// when ctx is done.
func sleep(ctx context.Context, d time.Duration, now func() time.Time) error {
	if dl, ok := ctx.Deadline(); ok && dl.Before(now().Add(d)) {
		return context.DeadlineExceeded
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// refusedPace bounds a refused client's backoff by how long the target
// has been refusing (see refusedBound).
const refusedPace = 0.5

// refusedWindows: the refused backoff's bound is never less than this
// many restarted windows (see refusedBound).
const refusedWindows = 2

// refusedBound is the longest backoff delay after a refusal when the
// target has been refusing for the duration refusing (counted from its
// first refusal after it last proved healthy: refusingSince) and its
// restarted window is window: refusedPace × refusing, at least
// refusedWindows × window.
//
// A refusal is a failure for the backoff policy, whose delay doubles per
// failure (DefaultBackoff: full jitter from 100 ms up to 10 s). While a
// server restarts, a client is refused once per restarted window (0.13 s
// at 2,000 lab clients), 4.4 times on average in a 1 s outage in
// simulate, and after its 4th–6th refusal drew its next dial from up to
// 0.8–3.2 s: the lab's fleet of 2,000 came back thinly until 2.6–3.0 s,
// 2.2–2.5× `immediate`'s 1.1 s (docs/benchmarks.md 8m, 8n). Bounded by
// half the time refused so far, a client is back at most half the
// outage after the server is (a 1 s outage costs ≤ 0.5 s: the lab's
// 2,000 back in 1.48–1.52 s), while in a long outage the bound grows by
// half per attempt and passes the policy's cap (10 s) after 20 s of
// refusals: from then on the policy alone paces the client, as before
// (60 s refused: at most 29 attempts against 25 without the bound,
// TestRefusedBackoffBoundedByOutage).
//
// The bound only brings the policy's retry forward, never the window's
// (retryAt, one window after the refusal), and never to less than two
// windows after the refusal. The window spreads the refused fleet's
// return at its rate; a retry the policy drew later than that thins the
// return, and bringing it forward thickens it again. Bounded by half the
// time refused alone, a lab restart of 6,000 (a 0.4 s window) moved 130
// of its 10,213 refused retries forward by 66 ms on average (one run
// counted), and such restarts overflowed in 5 of 5 runs (33–134; main's
// dialer, the same minutes: 0 in 3 of 4, 383 at load 2.4). With two
// windows the bound moves nothing at 4,000 clients and more in a 1 s
// outage (simulate: main's figures), and at 2,000 it is half the time
// refused from 0.53 s of refusals on. A refusal costs the server nothing
// (no accept queue, no Valkey CPU). Called with mu held.
func refusedBound(refusing, window time.Duration) time.Duration {
	return max(time.Duration(refusedPace*float64(refusing)), refusedWindows*window)
}
