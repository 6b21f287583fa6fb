package lab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/dialer"
)

var pingCmd = []byte("*1\r\n$4\r\nPING\r\n")

// rawConn is one connection of the lab's own strategies.
type rawConn struct {
	c      net.Conn
	r      *bufio.Reader
	proven bool // a PING succeeded on it
	// owed counts replies the server still owes to commands whose wait
	// ran out (a stormguard instance's INFO read, see observer): the
	// next reads take them first, as a pipelined client (valkey-go)
	// matches replies to commands in order, instead of mistaking a late
	// reply for unsolicited data and redialling.
	owed int
}

func (r *run) open(ctx context.Context, dial DialFunc) (*rawConn, error) {
	c, err := dial(ctx, "tcp", r.cfg.Target)
	if err != nil {
		return nil, err
	}
	rc := &rawConn{c: c, r: bufio.NewReaderSize(c, 512)}
	if hs := r.handshake(); len(hs) > 0 {
		// Pipelined, as client libraries send their handshake.
		var buf []byte
		for _, args := range hs {
			buf = appendCommand(buf, args...)
		}
		_ = c.SetDeadline(time.Now().Add(r.cfg.CommandTimeout))
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return nil, err
		}
		for _, args := range hs {
			rp, err := readReply(rc.r)
			if err == nil && rp.kind == '-' {
				err = errors.New(rp.line)
			}
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("%s: %w", args[0], err)
			}
		}
	}
	return rc, nil
}

// errUnsolicited: the server sent bytes nobody asked for.
var errUnsolicited = errors.New("unsolicited data from the server")

// idle waits d before the next PING while watching the connection, as a
// client library's reader does: a closed or reset connection (CLIENT
// KILL, a restart) is noticed at once, not at the next PING. The period
// between PINGs then sets the fleet's command load without spreading its
// reconnects, so large fleets can PING less often and still storm as one.
// It returns nil when d passed quietly, and the connection's error (or
// ctx's) otherwise.
func (rc *rawConn) idle(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	if rc.owed > 0 {
		// A late reply may arrive while idle: take it.
		until := time.Now().Add(d)
		if err := rc.takeOwed(ctx, until); err != nil {
			return err
		}
		if d = time.Until(until); d <= 0 {
			return ctx.Err()
		}
	}
	// Wait on the connection under the dialer's (stormguard), whose
	// Read would take an idle deadline for a lost connection.
	w := rc.c
	if dc, ok := w.(*dialer.Conn); ok {
		w = dc.Conn
	}
	if tc, ok := w.(*tls.Conn); ok {
		err := tlsIdle(ctx, tc, d)
		if err != nil && ctx.Err() == nil && w != rc.c {
			// Let the dialer see the loss (see below).
			var b [1]byte
			_, _ = rc.c.Read(b[:])
		}
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = w.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	_ = w.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	n, err := w.Read(b[:])
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if n > 0 {
		return errUnsolicited
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if err == nil {
		err = io.EOF
	}
	if w != rc.c {
		// Let the dialer see the loss too: the socket's EOF or reset is
		// sticky, so its own Read reports it again.
		_, _ = rc.c.Read(b[:])
	}
	return err
}

// takeOwed consumes the replies still owed (rawConn.owed) that arrive by
// until; those that do not stay owed (the next PING reads them first). A
// TLS connection is left to the PING: its socket's bytes may be a session
// ticket rather than a reply (see tlsIdle).
func (rc *rawConn) takeOwed(ctx context.Context, until time.Time) error {
	nc := netConnOf(rc.c)
	if isTLS(nc) {
		return nil
	}
	for rc.owed > 0 {
		err := waitReadable(ctx, nc, until)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return err
		}
		// The reply has begun to arrive; its rest is on the way.
		_ = rc.c.SetReadDeadline(time.Now().Add(owedReadTimeout))
		if _, err := readReply(rc.r); err != nil {
			return err
		}
		rc.owed--
	}
	return nil
}

// owedReadTimeout bounds reading the rest of a late reply whose first
// bytes have arrived.
const owedReadTimeout = time.Second

// netConnOf is the connection beneath c's wrappers (the dialer's Conn,
// TLS): whose socket holds the bytes.
func netConnOf(c net.Conn) net.Conn {
	for {
		switch w := c.(type) {
		case *dialer.Conn:
			c = w.Conn
		case *tls.Conn:
			return w
		default:
			return c
		}
	}
}

func isTLS(c net.Conn) bool {
	_, ok := c.(*tls.Conn)
	return ok
}

// ping sends one PING and waits for +PONG, after the replies still owed
// to earlier commands (rawConn.owed).
func (rc *rawConn) ping(timeout time.Duration) error {
	_ = rc.c.SetDeadline(time.Now().Add(timeout))
	if _, err := rc.c.Write(pingCmd); err != nil {
		return err
	}
	for ; rc.owed > 0; rc.owed-- {
		if _, err := readReply(rc.r); err != nil {
			return err
		}
	}
	line, err := rc.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("+PONG")) {
		return fmt.Errorf("PING: %q", bytes.TrimSpace(truncate(line)))
	}
	return nil
}

// sleepCtx waits d or until ctx is done; false if ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// rawClient is one client of a lab-owned strategy: connect, PING every
// Period (watching the connection in between, see idle), reconnect on
// error. A lost connection that had proven itself
// is redialled at once (Delay(0) = 0, as every policy starts); each
// failed dial or failed first PING is a consecutive failure and waits the
// policy's delay; a successful PING resets the schedule. When
// paceDialErrors is set (the stormguard dialer, which waits inside
// DialContext) a refused dial waits ErrorPace, as the next command of
// an application would. observe, if set, is called after every
// successful PING (the stormguard instance reads connected_clients there
// now and then).
func (r *run) rawClient(ctx context.Context, id int, pol backoff.Policy, dial DialFunc, paceDialErrors bool, observe func(*rawConn)) {
	sched, _ := backoff.NewSchedule(pol, nil) // validated in Config.Validate
	churn := r.cfg.Scenario == "churn"
	// A client that has never been up retries at its strategy's pace
	// during the run, but during warm-up no faster than a deploy would
	// restart it (see warmupRetry): the start is not the storm measured.
	everUp, startFails := false, 0
	pace := func(d time.Duration) time.Duration {
		if everUp || !r.warming.Load() {
			return d
		}
		startFails++
		return max(d, warmupRetry(startFails))
	}
	var cc *rawConn
	defer func() {
		if cc != nil {
			cc.c.Close()
		}
	}()
	for ctx.Err() == nil {
		if cc == nil {
			c, err := r.open(ctx, dial)
			if err != nil {
				d := sched.Failure()
				if paceDialErrors {
					d = max(d, ErrorPace)
				}
				if !sleepCtx(ctx, pace(d)) {
					return
				}
				continue
			}
			cc = c
		}
		sent := time.Now()
		if err := cc.ping(r.cfg.CommandTimeout); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.rec.failedCommand(err)
			proven := cc.proven
			cc.c.Close()
			cc = nil
			if !proven && !sleepCtx(ctx, pace(sched.Failure())) {
				return
			}
			continue
		}
		cc.proven, everUp = true, true
		sched.Reset()
		r.rec.pingOK(id, sent)
		if observe != nil {
			observe(cc)
		}
		if churn {
			// valkey-benchmark -k 0: a new connection per request.
			cc.c.Close()
			cc = nil
			continue
		}
		if err := cc.idle(ctx, r.cfg.Period); err != nil {
			if ctx.Err() != nil {
				return
			}
			// Lost while idle (kill, restart): the next command of an
			// application fails; redial as after a failed PING.
			r.rec.failedCommand(err)
			cc.c.Close()
			cc = nil
		}
	}
}

// poolClient emulates an unbounded connection pool: PoolSize connections
// used in turn; on any error the whole pool is dropped and every
// connection is redialled at once, in parallel, with no backoff.
func (r *run) poolClient(ctx context.Context, id int, dial DialFunc) {
	conns := make([]*rawConn, r.cfg.PoolSize)
	closeAll := func() {
		for i, c := range conns {
			if c != nil {
				c.c.Close()
				conns[i] = nil
			}
		}
	}
	defer closeAll()
	next := 0
	var wg sync.WaitGroup
	for ctx.Err() == nil {
		failed := false
		var mu sync.Mutex
		for i := range conns {
			if conns[i] != nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := r.open(ctx, dial)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = true
					return
				}
				conns[i] = c
			}()
		}
		wg.Wait()
		if failed {
			continue // at once, forever
		}
		cc := conns[next%len(conns)]
		next++
		sent := time.Now()
		if err := cc.ping(r.cfg.CommandTimeout); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.rec.failedCommand(err)
			closeAll()
			continue
		}
		r.rec.pingOK(id, sent)
		if !sleepCtx(ctx, r.cfg.Period) {
			return
		}
	}
}

// observeEvery is how often a stormguard instance re-reads INFO once it
// has two readings: every 10 s, ± 20% so that the fleet's reads do not
// line up. observeFirst is the least time between its first two
// readings (the dialer compares readings at least a second apart). At
// 15,000 instances that is 1,500 reads/s of INFO server clients cpu
// stats, ~9.5 µs of the server's main thread each (1.4% of it; docs/lab.md,
// "What the stormguard instances read"): less than the INFO clients after
// nearly every PING (every 2 s) that the instances sent before.
const (
	observeEvery = 10 * time.Second
	observeFirst = time.Second
)

// observer returns an observe hook for one stormguard instance: after a
// successful PING, at its first and next PING at least observeFirst later
// and then about every observeEvery, it asks the server INFO server
// clients cpu stats on that connection and hands the reply to the dialer
// (ObserveInfo): connected_clients sizes the reconnect window for the
// next loss, the CPU times the rate it starts at ("what the server
// tells": from the first reading over the server's uptime, then over the
// span of two), as an application that reads INFO now and then would.
func observer(d *dialer.Dialer, target string, timeout time.Duration) func(*rawConn) {
	var mu sync.Mutex
	var last time.Time
	var next time.Duration // from last to the next reading
	reads := 0
	return func(rc *rawConn) {
		mu.Lock()
		if !last.IsZero() && time.Since(last) < next {
			mu.Unlock()
			return
		}
		last, next = time.Now(), observeFirst
		if reads++; reads >= 2 {
			next = observeEvery*4/5 + rand.N(observeEvery*2/5)
		}
		mu.Unlock()
		_ = rc.c.SetDeadline(time.Now().Add(timeout))
		if _, err := rc.c.Write(appendCommand(nil, "INFO", "server", "clients", "cpu", "stats")); err != nil {
			return
		}
		// Wait for the reply on the socket, not through the dialer's
		// Conn (which takes a read that times out for a lost
		// connection) nor the reader (a timed-out read may lose a
		// partial reply): an application that reads INFO now and then
		// keeps its connection when the reply is late, and takes the
		// reply when it comes (rawConn.owed).
		// (TLS reads as before: bytes on its socket may be a session
		// ticket, see tlsIdle.)
		if nc := netConnOf(rc.c); !isTLS(nc) {
			if err := waitReadable(context.Background(), nc, time.Now().Add(timeout)); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					rc.owed++
				}
				return
			}
			_ = rc.c.SetDeadline(time.Now().Add(timeout))
		}
		rp, err := readReply(rc.r)
		if err != nil || rp.kind != '$' {
			return
		}
		_ = d.ObserveInfo(target, string(rp.bulk)) // a reply without the fields changes nothing
	}
}

// warmupRetry is how long a client that has not come up yet waits after
// its n-th failed start during warm-up: full jitter over 100ms·2^(n-1),
// capped at 5s, as an orchestrator restarts an instance that failed to
// start. Without it a fleet whose timeout is shorter than the server's
// handshake backlog (250 ms over TLS) never finishes starting, and the
// warm-up becomes the storm.
func warmupRetry(n int) time.Duration {
	ceil := 5 * time.Second
	if n < 7 {
		ceil = min(ceil, 100*time.Millisecond<<(n-1))
	}
	return rand.N(ceil) + time.Millisecond
}

// tlsIdle is idle for a TLS connection. A Read on the tls.Conn that hits
// its deadline leaves the connection unusable for the next PING (measured:
// with Go's crypto/tls against Valkey 8.0.1, half the PINGs of an idle
// fleet then timed out), so the TLS stream is never read here: the TCP
// socket below it is watched with MSG_PEEK, which consumes nothing. EOF or
// an error ends the wait at once (a kill is seen at once, as in
// plaintext); bytes that arrive (a TLS alert, a session ticket) are left
// for the next PING's read, and the wait runs out its time.
func tlsIdle(ctx context.Context, c *tls.Conn, d time.Duration) error {
	until := time.Now().Add(d)
	err := waitReadable(ctx, c.NetConn(), until)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		if !sleepCtx(ctx, d) {
			return ctx.Err()
		}
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	case err != nil:
		return err
	}
	// Data waits: the next PING reads it.
	if !sleepCtx(ctx, time.Until(until)) {
		return ctx.Err()
	}
	return nil
}

// waitReadable waits, consuming nothing (MSG_PEEK), until nc's socket has
// bytes to read (nil), its peer closed it (io.EOF), until passes
// (os.ErrDeadlineExceeded) or ctx ends (ctx's error).
// errors.ErrUnsupported: nc has no socket to watch.
func waitReadable(ctx context.Context, nc net.Conn, until time.Time) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return errors.ErrUnsupported
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	_ = nc.SetReadDeadline(until)
	defer nc.SetReadDeadline(time.Time{})
	var b [1]byte
	var n int
	var rerr error
	err = raw.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return rerr != syscall.EAGAIN
	})
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return err
	case rerr != nil:
		return rerr
	case n == 0:
		return io.EOF
	}
	return nil
}
