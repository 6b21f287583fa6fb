//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// dialer opens connections from inside a namespace to one address.
type dialer struct {
	ns, addr string
	local    net.IP // optional source address
	timeout  time.Duration
	// tls, when set, makes every connection speak TLS; the timeout
	// covers connect and handshake together, as client libraries' connect
	// timeouts do.
	tls *tls.Config
}

func (d dialer) dial(ctx context.Context) (net.Conn, error) {
	to := d.timeout
	if to == 0 {
		to = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	var c net.Conn
	err := netns.Do(d.ns, func() error {
		var nd net.Dialer
		if d.local != nil {
			nd.LocalAddr = &net.TCPAddr{IP: d.local}
		}
		var err error
		c, err = nd.DialContext(ctx, "tcp", d.addr)
		return err
	})
	if err != nil || d.tls == nil {
		return c, err
	}
	return valkeyconn.HandshakeTLS(ctx, c, d.tls)
}

// cmd sends one inline command and reads one reply line.
func cmd(c net.Conn, timeout time.Duration, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(line + "\r\n")); err != nil {
		return "", err
	}
	s, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(s, "-") {
		return s, fmt.Errorf("valkey: %s", strings.TrimSpace(s))
	}
	return s, nil
}

// admin runs one command over a fresh connection.
func (r *run) admin(ctx context.Context, line string) (string, error) {
	c, err := r.dialer().dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return cmd(c, 30*time.Second, line)
}

func (r *run) dialer() dialer { return dialer{ns: r.sb.NetNS, addr: r.sb.Addr(), tls: r.tls} }

// churn opens per-request connections (connect, PING, close) at rate(t)
// per second until stop, t counted from the call. At most 2,000 are in
// flight; beyond that the shape is limited by the box, which the label's
// measured rate shows.
func (r *run) churn(ctx context.Context, d dialer, stop time.Duration, rate func(t time.Duration) float64) {
	r.traffic.Add(1)
	go func() {
		defer r.traffic.Done()
		ctx, cancel := context.WithTimeout(ctx, stop)
		defer cancel()
		sem := make(chan struct{}, 2000)
		var wg sync.WaitGroup
		defer wg.Wait()
		start := time.Now()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		last, acc := start, 0.0
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				acc += rate(now.Sub(start)) * now.Sub(last).Seconds()
				last = now
				for ; acc >= 1; acc-- {
					select {
					case sem <- struct{}{}:
					default:
						continue // saturated: skip, bounded
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						c, err := d.dial(ctx)
						if err != nil {
							return
						}
						_, _ = cmd(c, 5*time.Second, "PING")
						c.Close()
					}()
				}
			}
		}
	}()
}

// pool is a set of long-lived connections.
type pool struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	up     atomic.Int64
	dials  atomic.Int64
	// failed counts failed dials (connect or TLS handshake) per second
	// since start: what the clients themselves saw.
	start  time.Time
	failed [failSeconds]atomic.Int64
}

// failSeconds bounds the per-second failure record (every shape is
// bounded by 3 minutes).
const failSeconds = 240

func (p *pool) fail() {
	if i := int(time.Since(p.start) / time.Second); i >= 0 && i < failSeconds {
		p.failed[i].Add(1)
	}
}

// failingUntil is the end of the last second in which at least min dials
// failed (zero time when none did).
func (p *pool) failingUntil(min int64) time.Time {
	for i := failSeconds - 1; i >= 0; i-- {
		if p.failed[i].Load() >= min {
			return p.start.Add(time.Duration(i+1) * time.Second)
		}
	}
	return time.Time{}
}

// failures returns the per-second failure counts from second from to to
// (since the pool started), for notes.
func (p *pool) failures(from, to int) []int64 {
	var f []int64
	for i := max(from, 0); i < min(to, failSeconds); i++ {
		f = append(f, p.failed[i].Load())
	}
	return f
}

// poolOpts say how a pooled client behaves.
type poolOpts struct {
	n       int
	every   time.Duration // PING (or cmd) interval
	cmd     string        // default PING
	timeout time.Duration // reply timeout; on expiry the client redials
	redial  bool          // redial after an error (else the client ends)
	backoff time.Duration // max random wait before a redial (0: immediate)
	dialTO  time.Duration
	// firstDialTO, when set, bounds each client's first dial instead of
	// dialTO: a fleet that came up over a deploy, not all at once, so the
	// recording starts from a settled fleet even on a loaded box.
	firstDialTO time.Duration
	spread      time.Duration // open the n connections over this long (0: at once)
	// oneShot: one command per connection, then close and dial again
	// (a per-request client in a loop); needs redial.
	oneShot  bool
	lifetime time.Duration // bound
}

// openPool starts o.n clients; each dials, then sends cmd every o.every.
// poolRestarts is an application restarted n times: at first, first+every,
// … its old pool closes and a new one opens at once; the last closes at end
// (all times since the recording started).
func (r *run) poolRestarts(ctx context.Context, n int, first, every, end time.Duration, o poolOpts) {
	var p *pool
	for i := 0; i < n; i++ {
		r.at(ctx, first+time.Duration(i)*every)
		if p != nil {
			p.close()
		}
		p = r.openPool(ctx, r.dialer(), o)
	}
	r.at(ctx, end)
	if p != nil {
		p.close()
	}
}

func (r *run) openPool(ctx context.Context, d dialer, o poolOpts) *pool {
	if o.cmd == "" {
		o.cmd = "PING"
	}
	if o.timeout == 0 {
		o.timeout = 5 * time.Second
	}
	if o.lifetime == 0 {
		o.lifetime = 3 * time.Minute
	}
	d.timeout = o.dialTO
	ctx, cancel := context.WithTimeout(ctx, o.lifetime)
	p := &pool{cancel: cancel, start: time.Now()}
	r.traffic.Add(1)
	go func() {
		defer r.traffic.Done()
		p.wg.Wait()
	}()
	for i := 0; i < o.n; i++ {
		var delay time.Duration
		if o.spread > 0 {
			delay = o.spread * time.Duration(i) / time.Duration(o.n)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			sleep(ctx, delay)
			p.client(ctx, d, o)
		}()
	}
	return p
}

func (p *pool) client(ctx context.Context, d dialer, o poolOpts) {
	for attempt := 0; ctx.Err() == nil && attempt < 10000; attempt++ {
		p.dials.Add(1)
		dd := d
		if attempt == 0 && o.firstDialTO > 0 {
			dd.timeout = o.firstDialTO
		}
		c, err := dd.dial(ctx)
		if err != nil && ctx.Err() == nil {
			p.fail()
		}
		if err == nil {
			p.up.Add(1)
			br := bufio.NewReader(c)
			for ctx.Err() == nil {
				_ = c.SetDeadline(time.Now().Add(o.timeout))
				if _, err = c.Write([]byte(o.cmd + "\r\n")); err != nil {
					break
				}
				var line string
				if line, err = br.ReadString('\n'); err != nil {
					break
				}
				if strings.HasPrefix(line, "-") { // maxclients, LOADING…: the server refused us
					err = fmt.Errorf("%s", line)
					break
				}
				if o.oneShot {
					break
				}
				jit := time.Duration(rand.Int64N(int64(o.every)/5 + 1))
				sleep(ctx, o.every-o.every/10+jit)
			}
			p.up.Add(-1)
			c.Close()
		}
		if !o.redial || ctx.Err() != nil {
			return
		}
		if o.backoff > 0 {
			// U(0, backoff) before each redial: full jitter with its cap at
			// the base, so every attempt draws from the same window.
			sleep(ctx, backoff.FullJitter{Base: o.backoff, Cap: o.backoff}.Delay(1, 0, nil))
		} else if err != nil && !isTimeout(err) {
			// Connection refused while the server is down: a real
			// client without backoff spins; 10 ms keeps the box usable.
			sleep(ctx, 10*time.Millisecond)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func (p *pool) close() { p.cancel(); p.wg.Wait() }

// synFlood sends rate SYNs per second (non-blocking connects from the
// given source addresses, round robin) for dur; the handshakes are never
// completed because the caller drops the SYN-ACKs to those sources. The
// sockets are closed at the end. Bounded by max sockets.
func (r *run) synFlood(ctx context.Context, srcs []net.IP, rate float64, dur time.Duration, max int) error {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	port := r.sb.Port
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	acc, last := 0.0, start
	for time.Since(start) < dur && ctx.Err() == nil && len(fds) < max {
		now := <-tick.C
		acc += rate * now.Sub(last).Seconds()
		last = now
		err := netns.Do(r.sb.NetNS, func() error {
			for ; acc >= 1 && len(fds) < max; acc-- {
				src := srcs[len(fds)%len(srcs)].To4()
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return fmt.Errorf("socket: %w", err)
				}
				fds = append(fds, fd)
				if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte(src)}); err != nil {
					return fmt.Errorf("bind %s: %w", src, err)
				}
				if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil && err != unix.EINPROGRESS {
					return fmt.Errorf("connect: %w", err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	sleep(ctx, 2*time.Second) // let the SYN retransmits land in the queue too
	return nil
}

// poolBursts is a churn rate for pools whose maxIdle is below their
// maxActive: every period, a burst of 0-max extra connections (uniform,
// seeded) is opened within width and closed after use.
func poolBursts(period, width time.Duration, max int, seed uint64) func(time.Duration) float64 {
	rng := rand.New(rand.NewPCG(seed, 1))
	sizes := make([]float64, 1024)
	for i := range sizes {
		sizes[i] = float64(rng.IntN(max + 1))
	}
	return func(t time.Duration) float64 {
		if t%period >= width {
			return 0
		}
		return sizes[int(t/period)%len(sizes)] / width.Seconds()
	}
}

// healthChecks runs n checkers, each dialing from its own loopback
// address (127.0.1.1 on), every period on the same tick: connect, PING,
// close. Bounded by dur.
func (r *run) healthChecks(ctx context.Context, n int, period, dur time.Duration) {
	r.traffic.Add(1)
	go func() {
		defer r.traffic.Done()
		ctx, cancel := context.WithTimeout(ctx, dur)
		defer cancel()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				d := r.dialer()
				d.local = net.IPv4(127, 0, byte(1+i/250), byte(1+i%250))
				d.timeout = period
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := d.dial(ctx)
					if err != nil {
						return
					}
					_, _ = cmd(c, period, "PING")
					c.Close()
				}()
			}
			wg.Wait()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// pipelineBurst writes n INCRs in one pipeline over a fresh connection and
// reads the n replies.
func pipelineBurst(ctx context.Context, d dialer, n int) error {
	c, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		w := bufio.NewWriterSize(c, 1<<16)
		for i := 0; i < n; i++ {
			_, _ = w.WriteString("INCR corpus:pipeline\r\n")
		}
		_ = w.Flush()
	}()
	br := bufio.NewReaderSize(c, 1<<16)
	for i := 0; i < n; i++ {
		if _, err := br.ReadString('\n'); err != nil {
			return err
		}
	}
	return nil
}
