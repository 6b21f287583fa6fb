package source

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/internal/clientlist"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// The valkey source reads INFO and PING over ONE long-lived connection per
// target (principle 1 in docs/design.md). valkey-go is used for the protocol, but
// stormguard owns the connection's life cycle:
//
//   - One valkey.Client per TCP connection. Its DialCtxFn admits exactly one
//     dial and refuses valkey-go's own lazy redials, so a broken connection
//     never turns into a dial per command; and a source-wide gate refuses any
//     dial while another socket of this source is still open.
//   - A lost connection is redialled by stormguard, asynchronously, after a
//     capped, fully jittered exponential backoff. While waiting, Collect
//     answers at once with the reason and the time of the next try.
//   - AlwaysPipelining keeps valkey-go's pipe in background mode, where a
//     collect deadline abandons the wait but not the connection (in its
//     synchronous mode a read deadline closes the socket). A frozen Valkey
//     therefore keeps its connection; only total silence for SilenceLimit
//     (valkey-go's keepalive PING with ConnWriteTimeout) or a socket error
//     drops it. No new command is sent while an earlier one is unanswered.

// valkeyConfig is the connection policy of the valkey source. The defaults
// are documented in docs/signals.md; tests shorten them.
type valkeyConfig struct {
	// DialTimeout bounds the TCP connect plus TLS handshake, and separately
	// the HELLO/AUTH/SETNAME handshake that follows.
	DialTimeout time.Duration
	// OpenWait is how long opening the source waits for the first
	// connection, so a one-shot `stormguard sample` can report a wrong
	// password or an unreachable server at once.
	OpenWait time.Duration
	// KeepAlive is the TCP keepalive period and the idle gap after which
	// valkey-go sends a PING on the connection.
	KeepAlive time.Duration
	// SilenceLimit is valkey-go's ConnWriteTimeout: when a keepalive PING
	// gets no reply (and nothing else arrives) within it, the connection is
	// considered dead and closed.
	SilenceLimit time.Duration
	// StallLimit is a backstop: a request unanswered this long drops the
	// connection even if valkey-go has not.
	StallLimit time.Duration
	// BackoffBase and BackoffCap shape the redial schedule: after the n-th
	// consecutive failure wait U(0, min(cap, base·2^(n-1))) (full jitter).
	BackoffBase, BackoffCap time.Duration
	// AuthRetry is the least wait after an authentication failure, which
	// no quick retry can fix and each of which Valkey logs.
	AuthRetry time.Duration
	// StableAfter is how long a connection must stay up, with at least one
	// answered INFO, before the backoff schedule starts over.
	StableAfter time.Duration
	// CollectTimeout bounds a Collect whose context has no deadline.
	CollectTimeout time.Duration
	// ClientListEvery, ClientListMaxClients and ClientListMaxPing are the
	// safety rules of CLIENT LIST (principle 1 in docs/design.md): at most once
	// per ClientListEvery, only with at most ClientListMaxClients clients
	// and a PING under ClientListMaxPing, and only while the agent says
	// the target is calm. YoungAge is the age under which a client counts
	// as young in the groups.
	ClientListEvery      time.Duration
	ClientListMaxClients uint64
	ClientListMaxPing    time.Duration
	YoungAge             time.Duration
}

func defaultValkeyConfig() valkeyConfig {
	return valkeyConfig{
		DialTimeout:    2 * time.Second,
		OpenWait:       3 * time.Second,
		KeepAlive:      5 * time.Second,
		SilenceLimit:   30 * time.Second,
		StallLimit:     60 * time.Second,
		BackoffBase:    100 * time.Millisecond,
		BackoffCap:     5 * time.Second,
		AuthRetry:      30 * time.Second,
		StableAfter:    10 * time.Second,
		CollectTimeout: 2 * time.Second,

		ClientListEvery:      30 * time.Second,
		ClientListMaxClients: 5000,
		ClientListMaxPing:    20 * time.Millisecond,
		YoungAge:             10 * time.Second,
	}
}

// clientName is the CLIENT SETNAME of the reserved connection, so operators
// (and stormguard's own attribution) can tell it apart in CLIENT LIST.
const clientName = "stormguard"

var (
	// errRedialRefused is what valkey-go gets when it tries to redial on
	// its own: reconnecting is stormguard's job, with backoff.
	errRedialRefused = errors.New("redial refused: stormguard reconnects with backoff")
	// errSecondSocket guards the one-connection rule against a race
	// between a closing and a new connection.
	errSecondSocket = errors.New("previous connection still open")
	errSourceClosed = errors.New("valkey source closed")
)

// valkeySource implements sample.Source for Valkey.
type valkeySource struct {
	t      Target
	cfg    valkeyConfig
	libVer string
	log    *slog.Logger
	// redial is the redial schedule (full jitter over BackoffBase and
	// BackoffCap); rnd is its randomness (nil = process-wide source).
	redial backoff.Policy
	rnd    backoff.Rand

	mu        sync.Mutex
	conn      *valkeyConn   // the connection, nil when there is none
	attempt   chan struct{} // closed when the running connect attempt ends; nil when none runs
	attemptAt time.Time
	failures  int       // consecutive failed attempts and short-lived connections
	nextTry   time.Time // no attempt before this
	down      *connectError
	opened    uint64 // connections established so far
	live      int    // sockets open now; never more than 1
	dials     uint64 // sockets dialled so far (tests check the gate)
	closed    bool

	// detectorCalm is set by the agent while the target is calm (Set.SetDetectorCalm).
	detectorCalm atomic.Bool
	// clientsAt is when the last CLIENT LIST was attempted; guarded by mu.
	clientsAt time.Time
	// groups is what the last attempt published (Set.ClientGroups); a
	// published value is never changed.
	groups atomic.Pointer[ClientGroups]
}

// valkeyConn is one established connection and what was learnt on it.
type valkeyConn struct {
	client valkey.Client
	sock   *trackedConn
	since  time.Time

	// guarded by valkeySource.mu
	healthy bool     // at least one INFO answered
	pending *request // the latest request; may still be in flight

	// Owned by the request goroutine; requests on one connection never
	// overlap, and each starts after the previous one's done is closed.
	plainInfo    bool    // server rejected multi-section INFO; use plain INFO
	backlog      *uint64 // CONFIG GET tcp-backlog, once per connection
	maxclients   *uint64 // CONFIG GET maxclients when INFO lacks it
	configDenied bool    // CONFIG GET refused (ACL); don't ask again
	prevRejected *uint64
	nodeID       string // CLUSTER MYID, once per connection
	myidDenied   bool   // CLUSTER MYID refused; don't ask again
	clientsDeny  bool   // CLIENT LIST refused (ACL); don't ask again
}

// request is one PING+INFO exchange. done is closed when it has finished;
// the other fields are written before that.
type request struct {
	done chan struct{}
	sent time.Time
	v    *sample.Valkey
	err  error
	lost bool // the connection is gone
}

func openValkey(ctx context.Context, o Options) (sample.Source, error) {
	return openValkeyWith(ctx, o, defaultValkeyConfig()), nil
}

// openValkeyWith opens the source and waits up to cfg.OpenWait for the
// first connection attempt to end. It never fails: an unreachable Valkey
// is reported by Collect until it comes back.
func openValkeyWith(ctx context.Context, o Options, cfg valkeyConfig) *valkeySource {
	s := newValkeySource(o.Target, cfg, o.Version, o.logger())
	s.mu.Lock()
	done := s.startAttemptLocked()
	s.mu.Unlock()
	t := time.NewTimer(s.cfg.OpenWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	return s
}

func newValkeySource(t Target, cfg valkeyConfig, version string, log *slog.Logger) *valkeySource {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &valkeySource{
		t:      t,
		cfg:    cfg,
		libVer: libVersion(version),
		log:    log.With("source", "valkey", "target", t.Addr.String()),
		redial: backoff.FullJitter{Base: cfg.BackoffBase, Cap: cfg.BackoffCap},
	}
}

// Name implements sample.Source.
func (s *valkeySource) Name() string { return "valkey" }

// Collect implements sample.Source: PING (round trip) and INFO over the
// reserved connection. It returns by ctx's deadline whatever Valkey does.
func (s *valkeySource) Collect(ctx context.Context, out *sample.Sample) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.CollectTimeout)
		defer cancel()
	}
	c, err := s.connection(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	prev := c.pending
	s.mu.Unlock()
	if prev != nil {
		// Never queue a second command behind an unanswered one: a
		// stalled Valkey would get a burst of them when it wakes up.
		select {
		case <-prev.done:
			if prev.lost {
				return s.downErr()
			}
		case <-ctx.Done():
			return stalled(prev, "an earlier")
		}
	}
	r := s.startRequest(c)
	select {
	case <-r.done:
	case <-ctx.Done():
		return stalled(r, "this")
	}
	if r.lost {
		return s.downErr()
	}
	if r.err != nil {
		return r.err
	}
	s.mu.Lock()
	if s.opened > 1 {
		r.v.Reconnects = s.opened - 1
	}
	s.mu.Unlock()
	out.Valkey = r.v
	return nil
}

// stalled explains a request that has not been answered in time.
func stalled(r *request, which string) error {
	return fmt.Errorf("timeout: no reply to %s PING/INFO sent %s ago (connection kept: Valkey busy or frozen): %w",
		which, roundDur(time.Since(r.sent)), context.DeadlineExceeded)
}

// Close implements io.Closer: it closes the connection.
func (s *valkeySource) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	c := s.conn
	s.conn = nil
	wait := s.attempt
	s.mu.Unlock()
	if wait != nil {
		// The attempt closes what it opened once it sees closed.
		t := time.NewTimer(2*s.cfg.DialTimeout + time.Second)
		select {
		case <-wait:
		case <-t.C:
		}
		t.Stop()
	}
	if c != nil {
		c.sock.Close()
		c.client.Close()
	}
	return nil
}

// connection returns the established connection, or starts (or waits for)
// a connect attempt when the backoff allows, or explains why there is none.
func (s *valkeySource) connection(ctx context.Context) (*valkeyConn, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errSourceClosed
	}
	if c := s.conn; c != nil {
		s.mu.Unlock()
		return c, nil
	}
	wait := s.attempt
	if wait == nil {
		if time.Now().Before(s.nextTry) {
			err := s.downErrLocked()
			s.mu.Unlock()
			return nil, err
		}
		wait = s.startAttemptLocked()
	}
	started := s.attemptAt
	s.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
		// Same words as the attempt's own timeout (describeNetErr), so
		// which of the two deadlines fires first never changes the message.
		return nil, &valkeyDown{reason: fmt.Sprintf("connecting to %s: no answer within %s (still trying)",
			s.t.Addr.HostPort(), roundDur(time.Since(started)))}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return s.conn, nil
	}
	return nil, s.downErrLocked()
}

// startAttemptLocked starts a connect attempt in the background.
func (s *valkeySource) startAttemptLocked() chan struct{} {
	done := make(chan struct{})
	s.attempt = done
	s.attemptAt = time.Now()
	go s.runAttempt(done)
	return done
}

func (s *valkeySource) runAttempt(done chan struct{}) {
	defer close(done)
	client, sock, err := s.dial()
	s.mu.Lock()
	s.attempt = nil
	if s.closed {
		s.mu.Unlock()
		if client != nil {
			sock.Close()
			client.Close()
		}
		return
	}
	if err != nil {
		s.failures++
		s.down = err
		s.nextTry = time.Now().Add(s.backoffLocked())
		first := s.opened == 0 && s.failures == 1
		s.mu.Unlock()
		if first {
			s.log.Warn("cannot connect to Valkey; retrying with backoff", "err", err.Error())
		} else {
			s.log.Debug("connect attempt failed", "err", err.Error())
		}
		return
	}
	s.conn = &valkeyConn{client: client, sock: sock, since: time.Now()}
	s.opened++
	s.down = nil
	n := s.opened
	s.mu.Unlock()
	if n > 1 {
		s.log.Info("reconnected to Valkey", "reconnects", n-1)
	}
}

// backoffLocked returns the wait before the next attempt after
// s.failures consecutive failures: full jitter over a capped exponential.
func (s *valkeySource) backoffLocked() time.Duration {
	d := s.redial.Delay(s.failures, 0, s.rnd)
	if s.down != nil && s.down.auth && d < s.cfg.AuthRetry {
		d = s.cfg.AuthRetry
	}
	return d
}

// drop forgets a lost connection and schedules the redial.
func (s *valkeySource) drop(c *valkeyConn, cause error) {
	s.mu.Lock()
	if s.conn != c {
		s.mu.Unlock()
		return
	}
	s.conn = nil
	if c.healthy && time.Since(c.since) >= s.cfg.StableAfter {
		// It was a good connection: start the schedule over (the first
		// retry still waits a jittered moment).
		s.failures = 0
	}
	s.failures++
	s.down = &connectError{msg: "connection lost: " + describeLoss(cause), cause: cause}
	s.nextTry = time.Now().Add(s.backoffLocked())
	s.mu.Unlock()
	s.log.Warn("lost the Valkey connection; reconnecting with backoff", "err", cause.Error())
	c.sock.Close()
	go c.client.Close()
}

// downErr explains why there is no connection now.
func (s *valkeySource) downErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.downErrLocked()
}

func (s *valkeySource) downErrLocked() error {
	if s.closed {
		return errSourceClosed
	}
	if s.down == nil {
		return &valkeyDown{reason: "not connected to " + s.t.Addr.HostPort()}
	}
	reason := s.down.msg
	if wait := time.Until(s.nextTry); wait > 0 {
		reason += retryNext + roundDur(wait).String()
	} else {
		reason += retryNow
	}
	return &valkeyDown{reason: reason, cause: s.down}
}

const (
	unavailablePrefix = "unavailable: "
	retryNext         = "; next retry in "
	retryNow          = "; retrying now"
)

// OneShotReason turns the Valkey source's errors entry into the reason a
// command that takes its samples and exits (sample) reports: without the
// "unavailable: " prefix and the retry schedule, which only a running
// agent follows.
func OneShotReason(reason string) string {
	return strings.TrimPrefix(WithoutRetry(reason), unavailablePrefix)
}

// WithoutRetry is an errors entry without the Valkey source's retry
// schedule ("; next retry in 75ms"), for the footer of a command that
// exits.
func WithoutRetry(reason string) string {
	for _, sep := range []string{retryNext, retryNow} {
		if i := strings.LastIndex(reason, sep); i >= 0 {
			reason = reason[:i]
		}
	}
	return reason
}

// startRequest sends PING and INFO in the background and returns at once.
func (s *valkeySource) startRequest(c *valkeyConn) *request {
	r := &request{done: make(chan struct{}), sent: time.Now()}
	s.mu.Lock()
	c.pending = r
	s.mu.Unlock()
	go func() {
		defer close(r.done)
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StallLimit)
		defer cancel()
		v, err := s.query(ctx, c)
		if err != nil && connectionLost(err) {
			r.lost, r.err = true, err
			s.drop(c, err)
			return
		}
		r.v, r.err = v, err
		if err == nil {
			s.mu.Lock()
			c.healthy = true
			s.mu.Unlock()
		}
	}()
	return r
}

// connectionLost tells a dead connection (socket error, EOF, redial
// refused, stall backstop) from an error reply Valkey sent on a live one.
func connectionLost(err error) bool { return valkeyconn.ConnectionLost(err) }

// query runs one collect's exchange: PING for the round trip, then INFO,
// and the CONFIG reads that are done once per connection when calm.
func (s *valkeySource) query(ctx context.Context, c *valkeyConn) (*sample.Valkey, error) {
	cl := c.client
	t0 := time.Now()
	if err := cl.Do(ctx, cl.B().Ping().Build()).Error(); err != nil {
		return nil, fmt.Errorf("PING: %w", err)
	}
	ping := time.Since(t0)
	text, err := c.info(ctx)
	if err != nil {
		return nil, err
	}
	m := valkeyconn.ParseInfo(text)
	if len(m) == 0 {
		return nil, errors.New("INFO: empty reply")
	}
	v := valkeyFromInfo(m)
	v.PingMS = sample.F64(float64(ping.Microseconds()) / 1000)
	calm := c.calm(v, ping)
	if calm {
		if err := c.readConfig(ctx, v, s.log); err != nil {
			return nil, err
		}
	}
	if m["cluster_enabled"] == "1" {
		if calm && c.nodeID == "" && !c.myidDenied {
			if err := c.readNodeID(ctx, s.log); err != nil {
				return nil, err
			}
		}
		v.ClusterNodeID = c.nodeID
	}
	if calm && s.clientListDue(c, v, ping) {
		if err := s.readClientList(ctx, c); err != nil {
			return nil, err
		}
	}
	if v.MaxClients == nil && c.maxclients != nil {
		v.MaxClients = sample.U64(*c.maxclients)
	}
	if c.backlog != nil {
		v.TCPBacklog = sample.U64(*c.backlog)
	}
	c.prevRejected = v.RejectedConnections
	return v, nil
}

// info reads the INFO sections; servers older than Redis 7 take only one
// section argument, so on an error reply fall back to plain INFO (default
// sections) for the rest of the connection.
func (c *valkeyConn) info(ctx context.Context) (string, error) {
	cl := c.client
	if !c.plainInfo {
		text, err := cl.Do(ctx, cl.B().Info().Section(infoSections...).Build()).ToString()
		if err == nil {
			return text, nil
		}
		if connectionLost(err) || valkeyconn.IsPermission(err) {
			return "", fmt.Errorf("INFO: %w", err)
		}
		c.plainInfo = true
	}
	text, err := cl.Do(ctx, cl.B().Info().Build()).ToString()
	if err != nil {
		return "", fmt.Errorf("INFO: %w", err)
	}
	return text, nil
}

// calm says whether an extra CONFIG GET is acceptable now: no rejections
// since the last sample, clients below 90% of maxclients, a quick PING.
func (c *valkeyConn) calm(v *sample.Valkey, ping time.Duration) bool {
	if ping > 100*time.Millisecond {
		return false
	}
	if c.prevRejected != nil && v.RejectedConnections != nil && *v.RejectedConnections > *c.prevRejected {
		return false
	}
	if v.ConnectedClients != nil && v.MaxClients != nil && *v.ConnectedClients*10 >= *v.MaxClients*9 {
		return false
	}
	return true
}

// readConfig reads tcp-backlog (and maxclients when INFO lacks it) once per
// connection. An ACL that forbids CONFIG GET is remembered, not an error.
func (c *valkeyConn) readConfig(ctx context.Context, v *sample.Valkey, log *slog.Logger) error {
	if c.configDenied {
		return nil
	}
	get := func(param string) (*uint64, error) {
		cl := c.client
		m, err := cl.Do(ctx, cl.B().ConfigGet().Parameter(param).Build()).AsStrMap()
		if err != nil {
			if connectionLost(err) {
				return nil, fmt.Errorf("CONFIG GET %s: %w", param, err)
			}
			log.Debug("CONFIG GET refused; tcp_backlog stays unknown", "param", param, "err", err.Error())
			c.configDenied = true
			return nil, nil
		}
		n, err := strconv.ParseUint(m[param], 10, 64)
		if err != nil {
			return nil, nil
		}
		return &n, nil
	}
	var err error
	if c.backlog == nil {
		if c.backlog, err = get("tcp-backlog"); err != nil {
			return err
		}
	}
	if v.MaxClients == nil && c.maxclients == nil && !c.configDenied {
		if c.maxclients, err = get("maxclients"); err != nil {
			return err
		}
	}
	return nil
}

// dial opens one connection: TCP (inside the target's namespace), TLS,
// then valkey-go's handshake HELLO 3 [AUTH] SETNAME, SELECT, CLIENT SETINFO.
func (s *valkeySource) dial() (valkey.Client, *trackedConn, *connectError) {
	a := s.t.Addr
	var sock atomic.Pointer[trackedConn]
	opt, err := valkeyconn.ClientOption(a, s.t.NetNS, valkeyconn.Options{
		Name: clientName,
		// CLIENT SETINFO lib-name/lib-ver: stormguard, not the library.
		SetInfo:      []string{clientName, s.libVer},
		DialTimeout:  s.cfg.DialTimeout,
		KeepAlive:    s.cfg.KeepAlive,
		WriteTimeout: s.cfg.SilenceLimit,
	})
	if err != nil {
		return nil, nil, &connectError{msg: "connect " + a.HostPort() + ": " + err.Error(), cause: err}
	}
	opt.DialCtxFn = s.gate(&sock)
	// Background mode from the start: a collect deadline abandons the
	// wait, never the connection.
	opt.AlwaysPipelining = true
	// INFO replies are a few KiB; the 512 KiB default buffers are waste
	// for a monitoring connection.
	opt.ReadBufferEachConn = 64 << 10
	opt.WriteBufferEachConn = 16 << 10
	client, err := valkey.NewClient(opt)
	tc := sock.Load()
	if err != nil {
		if tc != nil {
			if line := tc.serverError(); line != "" && connectionLost(err) {
				err = &serverSaid{line: line, err: err}
			}
			tc.Close()
		}
		if client != nil {
			client.Close()
		}
		return nil, nil, describeConnectErr(a.HostPort(), a.User, a.TLS, s.cfg.DialTimeout, err)
	}
	if tc == nil {
		client.Close()
		return nil, nil, &connectError{msg: "connect " + a.HostPort() + ": no socket was dialled", cause: errors.New("no socket")}
	}
	return client, tc, nil
}

// gate is the DialCtxFn of one valkey.Client: it dials once, inside the
// target's namespace, and refuses every later dial of that client and any
// dial while another socket of this source is open.
func (s *valkeySource) gate(out *atomic.Pointer[trackedConn]) func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) {
	var used atomic.Bool
	return func(ctx context.Context, _ string, d *net.Dialer, tlsCfg *tls.Config) (net.Conn, error) {
		if !used.CompareAndSwap(false, true) {
			return nil, errRedialRefused
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, errSourceClosed
		}
		if s.live > 0 {
			s.mu.Unlock()
			return nil, errSecondSocket
		}
		s.live++
		s.dials++
		s.mu.Unlock()
		released := func() {
			s.mu.Lock()
			s.live--
			s.mu.Unlock()
		}
		ctx, cancel := context.WithTimeout(ctx, d.Timeout)
		defer cancel()
		raw, err := valkeyconn.DialTCP(ctx, d, s.t.Addr, s.t.NetNS)
		if err != nil {
			released()
			return nil, err
		}
		tc := &trackedConn{Conn: raw, onClose: released}
		out.Store(tc)
		if tlsCfg == nil {
			return tc, nil
		}
		return valkeyconn.HandshakeTLS(ctx, tc, tlsCfg)
	}
}

// trackedConn counts the source's open sockets and keeps the first bytes
// the server sent: a server at maxclients writes its error and closes at
// once, and valkey-go then reports only the EOF that ends its handshake.
type trackedConn struct {
	net.Conn
	once    sync.Once
	onClose func()

	mu    sync.Mutex
	first []byte
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if room := 256 - len(c.first); room > 0 {
			c.first = append(c.first, p[:min(n, room)]...)
		}
		c.mu.Unlock()
	}
	return n, err
}

// serverError returns the error line the server sent first, if it did.
func (c *trackedConn) serverError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.first) < 2 || c.first[0] != '-' {
		return ""
	}
	line, _, _ := strings.Cut(string(c.first[1:]), "\r")
	return line
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.onClose)
	return err
}

// libVersion makes a CLIENT SETINFO lib-ver: Valkey refuses spaces and
// special characters there.
func libVersion(v string) string {
	b := []byte(v)
	for i, ch := range b {
		ok := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '-' || ch == '_' || ch == '+'
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "dev"
	}
	return string(b)
}

// roundDur rounds for messages: 1.6s, 80ms.
func roundDur(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// readNodeID reads CLUSTER MYID once per connection (the id of a node never
// changes while it runs). A refusal (ACL) is remembered, not an error.
func (c *valkeyConn) readNodeID(ctx context.Context, log *slog.Logger) error {
	cl := c.client
	id, err := cl.Do(ctx, cl.B().ClusterMyid().Build()).ToString()
	if err != nil {
		if connectionLost(err) {
			return fmt.Errorf("CLUSTER MYID: %w", err)
		}
		log.Debug("CLUSTER MYID refused; cluster_node_id stays unknown", "err", err.Error())
		c.myidDenied = true
		return nil
	}
	c.nodeID = strings.TrimSpace(id)
	return nil
}

// clientListDue applies the CLIENT LIST safety rules: the agent says calm,
// few enough clients, a quick PING, and the last list is old enough. The
// caller has already checked the connection-level calm (no rejections,
// clients below 90% of maxclients).
func (s *valkeySource) clientListDue(c *valkeyConn, v *sample.Valkey, ping time.Duration) bool {
	if !s.detectorCalm.Load() || c.clientsDeny || v.ConnectedClients == nil {
		return false
	}
	if *v.ConnectedClients > s.cfg.ClientListMaxClients || ping >= s.cfg.ClientListMaxPing {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clientsAt.IsZero() || time.Since(s.clientsAt) >= s.cfg.ClientListEvery
}

// readClientList takes CLIENT LIST and keeps it grouped. Only a lost
// connection is an error; a refusal is remembered for the connection and
// shown as the note.
func (s *valkeySource) readClientList(ctx context.Context, c *valkeyConn) error {
	s.mu.Lock()
	s.clientsAt = time.Now()
	s.mu.Unlock()
	cl := c.client
	text, err := cl.Do(ctx, cl.B().ClientList().Build()).ToString()
	if err != nil {
		if connectionLost(err) {
			return fmt.Errorf("CLIENT LIST: %w", err)
		}
		c.clientsDeny = true
		s.publishGroups(nil, "CLIENT LIST refused: "+err.Error())
		return nil
	}
	all, err := clientlist.Parse(text)
	note := ""
	if err != nil {
		note = "CLIENT LIST reply not understood: " + err.Error()
	}
	others := all[:0]
	for _, cli := range all {
		// stormguard's own reserved connection and replication links
		// (flags S: a replica's link here, M: this replica's link to its
		// primary) are not application clients.
		if cli.Name == clientName && cli.Cmd == "client|list" || cli.ReplicationLink() {
			continue
		}
		others = append(others, cli)
	}
	snap := clientlist.GroupClients(others, time.Now(), s.cfg.YoungAge, 10)
	if err != nil {
		s.publishGroups(nil, note) // keep the last list understood
	} else {
		s.publishGroups(&snap, note)
	}
	return nil
}

// publishGroups publishes a new ClientGroups value: snap, or the previous
// snapshot when snap is nil, with note.
func (s *valkeySource) publishGroups(snap *clientlist.Snapshot, note string) {
	if snap == nil {
		if prev := s.groups.Load(); prev != nil {
			snap = prev.Snapshot
		}
	}
	s.groups.Store(&ClientGroups{Snapshot: snap, Note: note})
}
