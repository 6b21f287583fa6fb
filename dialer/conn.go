package dialer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// maxClientsPrefix is what Valkey writes before closing a connection over
// maxclients (acceptCommonHandler); the cluster variant shares the prefix.
const maxClientsPrefix = "-ERR max number of clients"

// sniffLimit bounds how many bytes are buffered looking for the first
// non-error reply line.
const sniffLimit = 1024

// Conn is a connection made by a Dialer. It watches the start of the
// stream: the first reply line decides whether the server admitted the
// client ("-ERR max number of clients reached" is overload), and an
// EOF/reset/timeout before it is overload too.
// Only *Conn methods that are part of net.Conn plus MarkHandshake are
// meant for callers. Once the handshake is seen
// and the connection then stays up for Options.StableAfter, the target's
// backoff resets.
type Conn struct {
	net.Conn
	d     *Dialer
	t     *target
	probe bool // holds a half-open probe slot until the handshake
	// credit: the dial took one of the target's credits (credit.go)
	// instead of a rate-limit token; settleCredit gives it back if the
	// connection is not admitted.
	credit bool

	// slow: the connect took at least SlowConnect. Set once before the
	// Conn is shared.
	slow bool
	// manual: the caller (a Reservation) reports stability itself; no
	// timer.
	manual bool
	// started is when the dial started (for a Reservation: when it is
	// due). Set once before the Conn is shared.
	started time.Time
	// admitted is when the dialer admitted the dial (see fail).
	admitted time.Time
	// drawnIn is the episode whose window the dial drew its time from
	// (see admit, refused). Set once before the Conn is shared.
	drawnIn time.Time

	mu        sync.Mutex
	sniff     bool
	decided   bool   // the first bytes were classified
	pending   []byte // bytes read while deciding, not yet returned
	buf       []byte
	handshook bool
	stable    bool
	done      bool // failure recorded, or closed
	// lostReported: the loss of this stable connection was recorded.
	lostReported bool
	timer        *time.Timer
}

// verdict of the first reply lines.
type verdict int

const (
	verdictUnknown  verdict = iota // no complete non-error line yet
	verdictOverload                // "-ERR max number of clients …"
	verdictAdmitted                // a non-error reply: the server took us
)

// sniffReplies looks at the complete lines in buf, in order. An error
// reply other than maxclients (NOAUTH, an unknown HELLO) is skipped: the
// client may recover from it. It returns the verdict, the deciding line
// (trimmed) and the bytes after the last line it consumed.
func sniffReplies(buf []byte) (verdict, string, []byte) {
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return verdictUnknown, "", buf
		}
		line := bytes.TrimRight(buf[:i], "\r")
		buf = buf[i+1:]
		switch {
		case bytes.HasPrefix(line, []byte(maxClientsPrefix)):
			return verdictOverload, string(line), buf
		case len(line) > 0 && line[0] == '-':
			continue
		default:
			return verdictAdmitted, string(line), buf
		}
	}
}

// Read reads from the connection, sniffing the first reply line. While
// the first bytes could still be a maxclients rejection they are held
// back; a rejection is returned as an error wrapping ErrOverloaded instead
// of as data. Valkey writes that rejection as soon as it accepts, before
// the client's HELLO, so a client library would otherwise parse a reply it
// never asked for (valkey-go v1.0.79 once panicked in exactly this
// scenario in our tests: "protocol bug, message handled out of order").
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
		return n, nil
	}
	first := c.sniff && !c.handshook && !c.done && !c.decided
	watching := !c.stable && !c.done
	c.mu.Unlock()
	if first {
		return c.readFirst(p)
	}
	n, err := c.Conn.Read(p)
	if !watching {
		if err != nil {
			c.lostStable(err, c.noticedLate(err))
		}
		return n, err
	}
	if line := c.observe(p[:n], err); line != "" {
		return 0, fmt.Errorf("%w: %s", ErrOverloaded, line)
	}
	return n, err
}

// readFirst reads until the stream can no longer be a maxclients line.
func (c *Conn) readFirst(p []byte) (int, error) {
	var acc []byte
	// Small reads: the decision needs at most a line, and the caller's
	// buffer may be large (valkey-go reads into 0.5 MiB).
	buf := make([]byte, 512)
	for {
		n, err := c.Conn.Read(buf)
		acc = append(acc, buf[:n]...)
		if err == nil && len(acc) < sniffLimit && mayBeMaxClients(acc) {
			continue
		}
		c.mu.Lock()
		c.decided = true
		c.mu.Unlock()
		if line := c.observe(acc, err); line != "" {
			return 0, fmt.Errorf("%w: %s", ErrOverloaded, line)
		}
		k := copy(p, acc)
		if k < len(acc) {
			c.mu.Lock()
			c.pending = append(c.pending, acc[k:]...)
			c.mu.Unlock()
			return k, nil // the error, if any, comes again on a later Read
		}
		return k, err
	}
}

// mayBeMaxClients reports whether b, with no complete line yet, could
// still turn out to be the maxclients rejection.
func mayBeMaxClients(b []byte) bool {
	if bytes.IndexByte(b, '\n') >= 0 {
		return false
	}
	if len(b) <= len(maxClientsPrefix) {
		return strings.HasPrefix(maxClientsPrefix, string(b))
	}
	return bytes.HasPrefix(b, []byte(maxClientsPrefix))
}

// observe classifies bytes read and read errors; it returns the
// maxclients line when the server rejected the connection.
func (c *Conn) observe(p []byte, err error) string {
	c.mu.Lock()
	if c.sniff && !c.handshook && len(p) > 0 {
		c.buf = append(c.buf, p...)
		v, line, rest := sniffReplies(c.buf)
		c.buf = rest
		switch v {
		case verdictOverload:
			c.buf = nil
			c.mu.Unlock()
			c.overload(errors.New(line))
			return line
		case verdictAdmitted:
			c.buf = nil
			c.mu.Unlock()
			c.MarkHandshake()
			c.mu.Lock()
		case verdictUnknown:
			if len(c.buf) > sniffLimit { // not RESP: stop looking
				c.buf = nil
				c.sniff = false
			}
		}
	}
	handshook := c.handshook
	c.mu.Unlock()
	if err == nil || errors.Is(err, net.ErrClosed) {
		return ""
	}
	if !handshook {
		c.lostBeforeHandshake(err)
		return ""
	}
	c.lostYoung(err, c.noticedLate(err))
	return ""
}

// noticedLate is how long before this Read's err the kernel had the
// server's close (see closedAgo): a process slow to read — 15,000
// client goroutines on two cores, a GC pause — notices a CLIENT KILL or
// failover up to a second after it happened, and its reconnect episode
// starts at the close, not at the notice (see markLoss). 0 for anything
// but EOF (a reset or timeout leaves no mark).
func (c *Conn) noticedLate(err error) time.Duration {
	if !errors.Is(err, io.EOF) {
		return 0
	}
	return closedAgo(c.Conn)
}

// lostBeforeHandshake: EOF, reset or timeout before any reply is how an
// overloaded server looks (TLS at maxclients, a silently dropped final
// ACK), so it counts as overload of the target.
func (c *Conn) lostBeforeHandshake(err error) {
	var ne net.Error
	if errors.Is(err, net.ErrClosed) {
		return
	}
	if errors.As(err, &ne) && ne.Timeout() || isEOFOrReset(err) {
		c.overload(err)
		return
	}
	c.lost(err)
}

func (c *Conn) overload(err error) {
	if !c.finish() {
		return
	}
	c.d.mu.Lock()
	c.t.stats.Overloads++
	c.d.failLocked(c.t, EventOverload, err, c.takeProbe(), c.started, c.admitted)
	c.settleCredit()
	c.d.mu.Unlock()
}

func (c *Conn) lost(err error) {
	if !c.finish() {
		return
	}
	c.d.mu.Lock()
	c.d.failLocked(c.t, EventConnLost, err, c.takeProbe(), c.started, c.admitted)
	c.settleCredit()
	c.d.mu.Unlock()
}

// lostYoung records the loss of a connection that completed its
// handshake but not StableAfter. It is a failure (the backoff and the
// breaker count it: a server that admits and then drops is not healthy),
// but when it starts a reconnect episode it does not grow the window:
// the loss itself is the fleet-wide event (a restart, CLIENT KILL) that
// the fleet-sized window is for, exactly as for an older connection.
// Growing it there made the age of the lost connection decide the
// fleet's recovery time: a kill 2 s after a fleet started took 1.5× as
// long to recover as the same kill 6 s after. Failures inside the
// episode (its redials) still grow it.
func (c *Conn) lostYoung(err error, ago time.Duration) {
	if !c.finish() {
		return
	}
	d, t := c.d, c.t
	d.mu.Lock()
	d.fail(t, EventConnLost, err, failure{probe: c.takeProbe(), grow: d.inEpisode(t, d.o.Now()), breaker: true, started: c.started, admitted: c.admitted, ago: ago})
	c.settleCredit()
	d.mu.Unlock()
}

// finish marks the connection's outcome recorded; false if it already was.
func (c *Conn) finish() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done || c.stable {
		return false
	}
	c.done = true
	if c.timer != nil {
		c.timer.Stop()
	}
	return true
}

// takeProbe returns whether c held a probe slot and gives it up. Called
// with d.mu held; failLocked releases the slot itself.
func (c *Conn) takeProbe() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.probe
	c.probe = false
	return p
}

// MarkHandshake records that the server admitted this connection (the
// HELLO/AUTH reply arrived). Sniffing calls it on the first non-error
// reply; with Options.DisableSniff the caller must. The target's backoff
// resets once the connection has then stayed up for StableAfter.
func (c *Conn) MarkHandshake() {
	c.mu.Lock()
	if c.handshook || c.done {
		c.mu.Unlock()
		return
	}
	c.handshook = true
	c.mu.Unlock()

	d, t := c.d, c.t
	d.mu.Lock()
	t.handshook = true
	t.brFailures = 0
	if !c.slow {
		d.clean(t)
	}
	d.emit(t, EventHandshake, 0, nil)
	if c.takeProbe() {
		t.probes--
		t.breaker = breakerClosed
		d.emit(t, EventBreakerClosed, 0, nil)
	}
	d.mu.Unlock()

	if d.o.StableAfter == -1 {
		c.markStable()
		return
	}
	if c.manual {
		return
	}
	c.mu.Lock()
	if !c.done {
		c.timer = time.AfterFunc(d.o.StableAfter, c.markStable)
	}
	c.mu.Unlock()
}

// markStable resets the target's backoff: this connection proved healthy.
func (c *Conn) markStable() {
	c.mu.Lock()
	if c.done || c.stable {
		c.mu.Unlock()
		return
	}
	c.stable = true
	c.mu.Unlock()
	d, t := c.d, c.t
	d.mu.Lock()
	t.failures, t.prevDelay, t.nextDial = 0, 0, time.Time{}
	t.refusingSince = time.Time{}
	if !c.slow {
		d.raise(t)
	}
	t.stats.Healthy++
	d.emit(t, EventHealthy, 0, nil)
	d.mu.Unlock()
}

// Write writes to the connection; a healthy connection's write failing
// (reset, broken pipe) counts as its loss like a read EOF does.
func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.lostStable(err, 0)
	}
	return n, err
}

// lostStable records that a connection which had proved healthy was lost
// (the server closed or reset it: a restart, a failover, CLIENT KILL; or
// a read or write timed out: a blip, a stalled server). It is not a
// failure, so the backoff stays reset — but every client of the server
// loses its connection in the same instant, so the target's next dials
// are spread over the reconnect window instead of all going at once.
// However old the connection was, the window applies. ago is how long
// before now the kernel had the server's close (0: unknown; see
// markLoss).
func (c *Conn) lostStable(err error, ago time.Duration) {
	if errors.Is(err, net.ErrClosed) {
		return
	}
	c.mu.Lock()
	if !c.stable || c.lostReported {
		c.mu.Unlock()
		return
	}
	c.lostReported = true
	c.mu.Unlock()
	d, t := c.d, c.t
	d.mu.Lock()
	d.markLoss(t, d.o.Now(), err, ago)
	d.grantCredit(t)
	d.emit(t, EventConnLost, 0, err)
	d.mu.Unlock()
}

// Close closes the connection. Closing by the caller is not a failure.
func (c *Conn) Close() error {
	c.release()
	if c.Conn == nil {
		return nil
	}
	return c.Conn.Close()
}

// release marks c done and gives up its probe slot.
func (c *Conn) release() {
	c.mu.Lock()
	c.done = true
	if c.timer != nil {
		c.timer.Stop()
	}
	probe := c.probe
	c.probe = false
	c.mu.Unlock()
	if probe {
		c.d.mu.Lock()
		c.t.probes--
		c.d.mu.Unlock()
	}
}

// MarkHandshake calls (*Conn).MarkHandshake if conn came from a Dialer
// (possibly under a *tls.Conn); it reports whether it did.
func MarkHandshake(conn net.Conn) bool {
	for conn != nil {
		switch c := conn.(type) {
		case *Conn:
			c.MarkHandshake()
			return true
		case interface{ NetConn() net.Conn }:
			conn = c.NetConn()
		default:
			return false
		}
	}
	return false
}
