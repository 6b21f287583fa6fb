package lab

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valkey-io/valkey-go"
)

// silentLogger drops go-redis's pool logging, which would print a line per
// failed dial to stderr during a storm.
type silentLogger struct{}

func (silentLogger) Printf(context.Context, string, ...any) {}

// pinger is one application instance's client library: the clients of the
// instance share it, as goroutines of one process share its client.
type pinger interface {
	ping(ctx context.Context) error
	close()
}

func init() {
	strategies.register(30, "go-redis", libStrategy{newGoRedis})
	strategies.register(31, "valkey-go", libStrategy{newValkeyGo})
}

// libStrategy runs a real client library, one client object per instance,
// made by open with the instance's counting dialer.
type libStrategy struct {
	open func(ctx context.Context, r *run, dial DialFunc) (pinger, error)
}

func (libStrategy) check(Config) error { return nil }
func (libStrategy) traits(Config) traits {
	return traits{connsPerClient: 1, fdsPerInstance: 2}
}

func (s libStrategy) instance(ctx context.Context, r *run, k int) (instance, error) {
	p, err := s.open(ctx, r, r.countedDial(k))
	if err != nil {
		return nil, err
	}
	return libInstance{r, p}, nil
}

// libInstance runs libClients over one shared pinger.
type libInstance struct {
	r *run
	p pinger
}

func (i libInstance) client(ctx context.Context, id int) { i.r.libClient(ctx, id, i.p) }
func (i libInstance) close()                             { i.p.close() }

type goRedis struct{ c *redis.Client }

func (g goRedis) ping(ctx context.Context) error { return g.c.Ping(ctx).Err() }
func (g goRedis) close()                         { g.c.Close() }

// newGoRedis returns a go-redis client with default options; only the
// dialer is replaced so that dials are counted (and made in the
// namespace). go-redis applies its own DialTimeout (5s) through ctx.
func newGoRedis(_ context.Context, r *run, dial DialFunc) (pinger, error) {
	redis.SetLogger(silentLogger{})
	if r.cfg.Cluster {
		return newGoRedisCluster(r, dial), nil
	}
	opt := &redis.Options{
		Addr:     r.cfg.Target,
		Username: r.cfg.User,
		Password: r.cfg.Password,
		Dialer:   dial,
	}
	switch r.cfg.Setup {
	case "none": // go-redis's default is HELLO 3 + CLIENT SETINFO
		opt.Protocol, opt.DisableIdentity = 2, true
	case "auth":
		opt.ClientName = labLib
	}
	c := redis.NewClient(opt)
	return goRedis{c}, nil
}

type valkeyGo struct{ c valkey.Client }

func (v valkeyGo) ping(ctx context.Context) error {
	return v.c.Do(ctx, v.c.B().Ping().Build()).Error()
}
func (v valkeyGo) close() { v.c.Close() }

// newValkeyGo returns a valkey-go client with default options but a
// counting dialer that honours valkey-go's dial timeout (5s by default).
// valkey-go connects in NewClient, so it retries until ctx ends.
func newValkeyGo(ctx context.Context, r *run, dial DialFunc) (pinger, error) {
	opt := valkey.ClientOption{
		InitAddress: []string{r.cfg.Target},
		Username:    r.cfg.User,
		Password:    r.cfg.Password,
		DialCtxFn: func(ctx context.Context, addr string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
			if d != nil && d.Timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d.Timeout)
				defer cancel()
			}
			return dial(ctx, "tcp", addr)
		},
	}
	if r.cfg.Cluster {
		opt.InitAddress = r.clusterNodes // a seed list, as for go-redis
		// valkey-go hands TLSConfig to DialCtxFn (which ignores it: the
		// lab's dial does the handshake) but also reads it to know that
		// the cluster speaks TLS: from CLUSTER SHARDS (which it uses on
		// Valkey 8 once HELLO 3 told it the version) it takes a node's
		// tls-port only then; a TLS-only node's plain port is 0.
		opt.TLSConfig = r.cfg.TLSConfig
	}
	switch r.cfg.Setup {
	case "none": // valkey-go's default is HELLO 3 + CLIENT SETINFO
		opt.AlwaysRESP2, opt.DisableCache, opt.ClientSetInfo = true, true, valkey.DisableClientSetInfo
	case "auth":
		opt.ClientName = labLib
	}
	for {
		c, err := valkey.NewClient(opt)
		if err == nil && r.cfg.Cluster {
			return valkeyGoCluster{valkeyGo{c}}, nil
		}
		if err == nil {
			return valkeyGo{c}, nil
		}
		if !sleepCtx(ctx, r.cfg.Period) {
			return nil, fmt.Errorf("valkey-go client: %w", err)
		}
	}
}

// libClient PINGs through an instance's shared library client.
func (r *run) libClient(ctx context.Context, id int, p pinger) {
	for ctx.Err() == nil {
		sent := time.Now()
		cctx, cancel := context.WithTimeout(ctx, r.cfg.CommandTimeout)
		err := p.ping(cctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.rec.failedCommand(err)
		} else {
			r.rec.pingOK(id, sent)
		}
		if !sleepCtx(ctx, r.cfg.Period) {
			return
		}
	}
}
