package dialer

import (
	"errors"
	"time"
)

// Reservation is one connection attempt that the Dialer paces but the
// caller makes and reports on: the Dialer's decisions without its I/O.
// It exists for callers that own the clock and the network — `stormguard
// simulate` drives thousands of Dialers through simulated time with it
// (Options.Now is the simulated clock) — and for clients that dial by
// themselves. A Reservation's methods take effect in the order the caller
// reports the events; each is a no-op once the attempt is over.
type Reservation struct {
	// Wait is how long the caller must wait, from the time of Reserve,
	// before it dials: the backoff, the reconnect window and the rate
	// limit.
	Wait time.Duration
	// Deadline is the SYN deadline of the attempt about to be made (0:
	// none): if it has not connected Deadline after it was dialled, the
	// caller closes it and calls Abandon.
	Deadline time.Duration
	c        *Conn
	// end is when DialTimeout ends the whole connect (zero: never);
	// attempt is when the current attempt is due.
	end, attempt time.Time
}

// Reserve decides the next connection attempt to addr at Options.Now():
// ErrCircuitOpen when the breaker refuses it, else a Reservation whose
// Wait says when to dial. Unlike DialContext it never sleeps.
func (d *Dialer) Reserve(addr string) (*Reservation, error) {
	admitted := d.o.Now()
	t, probe, wait, drawnIn, err := d.admit(addr)
	if err != nil {
		return nil, err
	}
	credit := d.takeCredit(t)
	if t.limiter != nil && !credit {
		r := t.limiter.ReserveN(d.o.Now().Add(wait), 1)
		wait += r.DelayFrom(d.o.Now().Add(wait))
	}
	d.mu.Lock()
	d.emit(t, EventDial, wait, nil)
	d.mu.Unlock()
	c := &Conn{d: d, t: t, probe: probe, credit: credit, sniff: false, manual: true, started: d.o.Now().Add(wait), admitted: admitted, drawnIn: drawnIn}
	r := &Reservation{Wait: wait, c: c, attempt: c.started}
	if d.o.DialTimeout > 0 {
		r.end = c.started.Add(d.o.DialTimeout)
	}
	d.mu.Lock()
	r.Deadline = d.attemptDeadline(t, c.started, r.end)
	d.mu.Unlock()
	return r, nil
}

// Abandon reports that the caller closed the attempt at its Deadline
// without a SYN-ACK (its SYN was dropped). It returns how long to wait
// before dialling again; the redial belongs to the same Reservation
// (report its outcome with Dialed) and gets a new Deadline. DialTimeout
// bounds the attempts together, from the first one's start: a wait that
// would pass that bound is 0.
func (r *Reservation) Abandon() time.Duration {
	c := r.c
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done {
		return 0
	}
	d, t := c.d, c.t
	d.mu.Lock()
	defer d.mu.Unlock()
	wait := d.abandon(t, r.attempt, c.started)
	now := d.o.Now()
	if !r.end.IsZero() && !now.Add(wait).Before(r.end) {
		wait = 0
	}
	r.attempt = now.Add(wait)
	r.Deadline = d.attemptDeadline(t, r.attempt, r.end)
	d.emit(t, EventDial, wait, nil)
	return wait
}

// Dialed reports the TCP connect's outcome: err != nil is a failed or
// timed-out connect (the target backs off); took is how long it took (a
// slow connect grows the window). It returns err.
func (r *Reservation) Dialed(took time.Duration, err error) error {
	return r.c.dialed(took, err)
}

// Handshake reports that the server admitted the connection (the first
// non-error reply). The caller reports Stable once the connection then
// stayed up for Options.StableAfter.
func (r *Reservation) Handshake() { r.c.MarkHandshake() }

// Stable reports that the connection stayed up StableAfter after its
// handshake: the target's backoff resets.
func (r *Reservation) Stable() { r.c.markStable() }

// Overloaded reports a maxclients rejection, or EOF, reset or a timeout
// before any reply.
func (r *Reservation) Overloaded(err error) {
	if err == nil {
		err = errors.New("overloaded")
	}
	r.c.overload(err)
}

// Lost reports that the connection ended by the server's side or by a
// timeout: before its handshake that is overload, before Stable a
// failure, after it a loss that spreads the next dials over the window.
func (r *Reservation) Lost(err error) { r.LostAgo(err, 0) }

// LostAgo is Lost for a connection whose end reached this host ago
// before the caller noticed it: a library that reads its socket's
// TCP_INFO after an EOF (what the Dialer's own Conn does: the server's
// FIN is tcpi_last_ack_recv ago in CLOSE_WAIT), or a simulation. The
// reconnect episode the loss starts is dated back by ago, at most a
// quarter of the episode, so a process that read the EOF late does not add its lag
// to the fleet's window. ago 0 is Lost.
func (r *Reservation) LostAgo(err error, ago time.Duration) {
	if err == nil {
		err = errors.New("connection lost")
	}
	ago = max(ago, 0)
	c := r.c
	c.mu.Lock()
	handshook, stable := c.handshook, c.stable
	c.mu.Unlock()
	switch {
	case stable:
		c.lostStable(err, ago)
	case handshook:
		c.lostYoung(err, ago)
	default:
		c.overload(err)
	}
}

// Close reports that the caller closed the connection itself (not a
// failure).
func (r *Reservation) Close() { _ = r.c.Close() }
