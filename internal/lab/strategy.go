package lab

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/dialer"
)

// A strategy is one way a fleet's clients connect and reconnect.
type strategy interface {
	// check reports what the strategy cannot run with in cfg (nil: fine).
	check(cfg Config) error
	// traits describes the strategy for sizing and counting.
	traits(cfg Config) traits
	// instance starts application instance k of run r, whose clients
	// then call its client method.
	instance(ctx context.Context, r *run, k int) (instance, error)
}

// traits are what a run needs to know about a strategy.
type traits struct {
	// connsPerClient is the connections one client holds (1).
	connsPerClient int
	// fdsPerInstance is the file descriptors an instance holds besides
	// its clients' connections (2).
	fdsPerInstance int
	// kernelDials: the strategy dials where the lab cannot hook, so its
	// connects are counted from the namespace's kernel counters.
	kernelDials bool
	// ownSource: the strategy picks its own source address.
	ownSource bool
}

// An instance is one application instance: the clients of an instance
// share its dialer or client library object, as goroutines of one process
// do.
type instance interface {
	// client runs client id until ctx ends.
	client(ctx context.Context, id int)
	close()
}

func init() {
	// The lab's own strategies, each a backoff policy by the same name
	// (backoff.ByName is the one mapping).
	for i, name := range []string{"immediate", "fixed", "glide", "full-jitter", "equal-jitter", "decorrelated"} {
		strategies.register(10+i, name, policyStrategy{name})
	}
	strategies.register(20, "stormguard", stormguardStrategy{})
	strategies.register(21, "pool-unbounded", poolStrategy{})
}

// AvailableStrategies returns the strategies this binary can run, in the
// order of a full comparison: Strategies() without the ones it was built
// without.
func AvailableStrategies() []string {
	return slices.DeleteFunc(Strategies(), func(s string) bool {
		st, _ := strategies.get(s)
		return errors.Is(st.check(Config{Spawn: &Spawn{}}), ErrNotBuiltIn)
	})
}

// policyStrategy is a lab-owned client whose reconnects follow the backoff
// policy of the same name.
type policyStrategy struct{ name string }

func (s policyStrategy) check(cfg Config) error {
	if _, err := backoff.ByName(s.name, cfg.Policy); err != nil {
		return bad("Policy", "{Policy}: %v", err)
	}
	return nil
}

// The lab's own clients hold one socket each (the old one is closed
// before a redial) and nothing per instance: 15,000 clients fit a 20,000
// fd limit.
func (policyStrategy) traits(Config) traits { return traits{connsPerClient: 1} }

func (s policyStrategy) instance(_ context.Context, r *run, k int) (instance, error) {
	pol, err := backoff.ByName(s.name, r.cfg.Policy)
	if err != nil {
		return nil, err
	}
	return rawInstance{r: r, pol: pol, dial: r.timedDial(k)}, nil
}

// rawInstance runs rawClients.
type rawInstance struct {
	r    *run
	pol  backoff.Policy
	dial DialFunc
	// paceDialErrors: a refused dial waits ErrorPace (the stormguard
	// dialer, which waits inside DialContext).
	paceDialErrors bool
	// observe, if set, runs after successful PINGs (see observer).
	observe func(*rawConn)
}

func (i rawInstance) client(ctx context.Context, id int) {
	i.r.rawClient(ctx, id, i.pol, i.dial, i.paceDialErrors, i.observe)
}
func (rawInstance) close() {}

// ErrorPace is how long a stormguard client waits after its dialer
// refused or failed a dial before it asks again, as an application's
// next command would come: the dialer itself holds the backoff. It does
// not follow Period, which sets the fleet's command load.
const ErrorPace = 100 * time.Millisecond

// stormguardStrategy: one dialer.Dialer per instance with its defaults.
type stormguardStrategy struct{}

func (stormguardStrategy) check(Config) error { return nil }
func (stormguardStrategy) traits(Config) traits {
	return traits{connsPerClient: 1}
}

func (stormguardStrategy) instance(_ context.Context, r *run, k int) (instance, error) {
	// The same connect timeout as every lab strategy
	// (the dialer's own default is 5s), the warm-up one until the fleet is up.
	o := dialer.Options{Dial: r.timedDial(k), DialTimeout: max(r.cfg.ConnectTimeout, r.cfg.warmupConnectTimeout())}
	if r.cfg.TLSConfig != nil {
		// The lab's Dial includes the TLS handshake, which waits for
		// Valkey's accept: a SYN deadline would cut connections that are
		// up. The dialer's adapters run TLS outside Options.Dial.
		o.SYNDeadline = -1
		// Likewise the silent cut of an episode of timeouts: a TLS
		// handshake slower than the cut would be cut mid-way.
		o.SilentCut = -1
		// Over TLS a connection costs the server ~30× what ConnectCost
		// (plaintext) assumes, and the dialer does not see this Dial's
		// TLS: keep AcceptRate, as DialTLSContext would.
		o.ConnectCost = -1
	}
	d, err := dialer.New(o)
	if err != nil {
		return nil, fmt.Errorf("stormguard dialer: %w", err)
	}
	// The dialer paces; the client itself redials at once. The instance
	// reads INFO server clients cpu stats now and then: connected_clients
	// sizes the dialer's reconnect window, the CPU times (over the
	// server's uptime, then between readings) its starting rate.
	return rawInstance{r: r, pol: backoff.Immediate{}, dial: d.DialContext, paceDialErrors: true,
		observe: observer(d, r.cfg.Target, r.cfg.CommandTimeout)}, nil
}

// poolStrategy emulates an unbounded connection pool (see poolClient).
type poolStrategy struct{}

func (poolStrategy) check(Config) error { return nil }
func (poolStrategy) traits(cfg Config) traits {
	return traits{connsPerClient: cfg.PoolSize}
}

func (poolStrategy) instance(_ context.Context, r *run, k int) (instance, error) {
	return poolInstance{r: r, dial: r.timedDial(k)}, nil
}

type poolInstance struct {
	r    *run
	dial DialFunc
}

func (i poolInstance) client(ctx context.Context, id int) { i.r.poolClient(ctx, id, i.dial) }
func (poolInstance) close()                               {}
