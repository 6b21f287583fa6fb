package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/stormguard/stormguard/backoff"
)

// Strategies the lab can replay, in the order of a full comparison.
var Strategies = []string{
	"immediate", "fixed", "glide", "full-jitter", "equal-jitter", "decorrelated",
	"stormguard", "pool-unbounded", "go-redis", "valkey-go", GLIDEStrategy,
}

// Scenarios the lab can run.
var Scenarios = []string{"kill", "restart", "blip", "churn"}

// ErrConfig is wrapped by every Config.Validate error.
var ErrConfig = errors.New("bad storm configuration")

// PolicyParams are the reconnect policy flags. Zero means the strategy's
// default.
type PolicyParams struct {
	Delay         time.Duration // fixed (100ms)
	Retries       int           // glide (5)
	Factor        int           // glide (100)
	ExponentBase  int           // glide (2)
	JitterPercent int           // glide (20)
	Base          time.Duration // full/equal-jitter, decorrelated (100ms)
	Cap           time.Duration // full/equal-jitter, decorrelated (10s)
	// GlideSet records which glide fields were given, so that an
	// explicit 0 retries or 0% jitter is kept.
	GlideSet map[string]bool
}

// Config describes one storm run. Zero fields mean the documented default.
type Config struct {
	// Target is the host:port the clients dial.
	Target string
	// User and Password authenticate every connection (AUTH).
	User, Password string
	// NetNS makes every socket in the run be created in that namespace;
	// kernel counters are read there too.
	NetNS string
	// Clients is the number of simulated clients (required).
	Clients int
	// Instances is the number of application instances the clients are
	// split over (Clients: every client is its own instance).
	Instances int
	// SourceAddrs spreads the instances over that many source addresses
	// when the target is a loopback IPv4 address: instance k connects
	// from 127.0.0.1+(k mod SourceAddrs), as if the instances ran on
	// different hosts. 0: one address per instance; 1: every connection
	// from the address the kernel picks, as valkey-benchmark does. Other
	// targets always get the kernel's choice.
	SourceAddrs int
	// Strategy is one of Strategies.
	Strategy string
	Policy   PolicyParams
	// Scenario is one of Scenarios.
	Scenario string
	// Period between one client's PINGs (100ms).
	Period time.Duration
	// ConnectTimeout bounds a dial of the lab's own strategies (2s, as
	// GLIDE); library strategies keep their own defaults.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each PING, for every strategy (1s).
	CommandTimeout time.Duration
	// PoolSize is the pool-unbounded strategy's connections per client (4).
	PoolSize int
	// Ramp is how many clients start per second during warm-up (1000).
	Ramp float64
	// WarmupTimeout bounds waiting for every client's first PING (60s).
	WarmupTimeout time.Duration
	// Hold is how long the warmed-up fleet runs before the disruption
	// (6s: longer than the dialer's StableAfter, so its connections
	// count as healthy, as in a fleet that has been up for a while).
	Hold time.Duration
	// Duration bounds the observation after the disruption (30s); churn
	// runs for exactly this long (5s when zero).
	Duration time.Duration
	// Settle is how long to keep observing after every client recovered,
	// to catch late overflows and stragglers (1s).
	Settle time.Duration
	// Blip is how long the blip scenario drops packets (2s).
	Blip time.Duration
	// Restart restarts the server for the restart scenario. It must
	// call down() once the server is gone (or the restart command
	// starts), which starts the recovery clock.
	Restart func(ctx context.Context, down func()) error
	// Progress, if set, receives a line per phase and per second.
	Progress io.Writer
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Instances == 0 {
		c.Instances = c.Clients
	}
	def(&c.Period, 100*time.Millisecond)
	def(&c.ConnectTimeout, 2*time.Second)
	def(&c.CommandTimeout, time.Second)
	if c.PoolSize == 0 {
		c.PoolSize = 4
	}
	if c.Ramp == 0 {
		c.Ramp = 1000
	}
	def(&c.WarmupTimeout, 60*time.Second)
	def(&c.Hold, 6*time.Second)
	if c.Scenario == "churn" {
		def(&c.Duration, 5*time.Second)
	}
	def(&c.Duration, 30*time.Second)
	def(&c.Settle, time.Second)
	def(&c.Blip, 2*time.Second)
	return c
}

// Validate reports the first thing wrong with c, wrapping ErrConfig.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)
	}
	switch {
	case c.Target == "":
		return bad("no target address")
	case c.Clients < 1:
		return bad("--clients must be at least 1, got %d", c.Clients)
	case c.Instances < 0:
		return bad("--instances must not be negative, got %d", c.Instances)
	case c.Instances > c.Clients:
		return bad("--instances %d exceeds --clients %d", c.Instances, c.Clients)
	case !slices.Contains(Strategies, c.Strategy):
		return bad("unknown strategy %q (want one of %s)", c.Strategy, strings.Join(Strategies, ", "))
	case c.Strategy == GLIDEStrategy && !glideBuiltIn:
		return fmt.Errorf("%w: %w", ErrConfig, ErrNotBuiltIn)
	case c.Strategy == GLIDEStrategy && c.NetNS == "":
		return bad("valkey-glide dials from its Rust core, where the lab cannot count dials; it counts them in the " +
			"kernel counters of the server's network namespace instead: give --netns (the server's, e.g. " +
			"/proc/PID/ns/net) or --spawn")
	case !slices.Contains(Scenarios, c.Scenario):
		return bad("unknown scenario %q (want one of %s)", c.Scenario, strings.Join(Scenarios, ", "))
	case c.Scenario == "churn" && c.Strategy != "immediate":
		return bad("the churn scenario measures the generator itself and runs only with --strategy immediate")
	case c.Scenario == "restart" && c.Restart == nil:
		return bad("the restart scenario needs --spawn or --restart-cmd")
	case c.Scenario == "blip" && c.NetNS == "":
		return bad("the blip scenario changes the firewall of the server's network namespace: give --netns or --spawn")
	case c.SourceAddrs < 0:
		return bad("--source-addrs must not be negative, got %d", c.SourceAddrs)
	case c.SourceAddrs > maxSourceAddrs:
		return bad("--source-addrs %d is more than the %d loopback addresses the lab uses", c.SourceAddrs, maxSourceAddrs)
	case c.PoolSize < 0:
		return bad("--pool-size must not be negative, got %d", c.PoolSize)
	case c.Ramp < 0:
		return bad("--ramp must not be negative, got %g", c.Ramp)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"--period", c.Period}, {"--connect-timeout", c.ConnectTimeout}, {"--command-timeout", c.CommandTimeout},
		{"--warmup-timeout", c.WarmupTimeout}, {"--hold", c.Hold}, {"--duration", c.Duration},
		{"--settle", c.Settle}, {"--blip", c.Blip}, {"--delay", c.Policy.Delay},
		{"--base", c.Policy.Base}, {"--cap", c.Policy.Cap},
	} {
		if d.v < 0 {
			return bad("%s must not be negative, got %s", d.name, d.v)
		}
	}
	if _, err := c.policy(); err != nil {
		return bad("%v", err)
	}
	return nil
}

// policy is the per-client reconnect policy of the lab's own strategies
// (Immediate for stormguard, whose dialer paces, and for the libraries,
// which pace themselves).
func (c Config) policy() (backoff.Policy, error) {
	p := c.Policy
	var pol backoff.Policy
	switch c.Strategy {
	case "fixed":
		d := p.Delay
		if d == 0 {
			d = 100 * time.Millisecond
		}
		pol = fixed{d}
	case "glide":
		g := backoff.DefaultGLIDE()
		set := func(name string, dst *int, v int) {
			if p.GlideSet[name] || v != 0 {
				*dst = v
			}
		}
		set("retries", &g.Retries, p.Retries)
		set("factor", &g.Factor, p.Factor)
		set("exponent-base", &g.ExponentBase, p.ExponentBase)
		set("jitter-percent", &g.JitterPercent, p.JitterPercent)
		pol = g
	case "full-jitter":
		pol = backoff.FullJitter{Base: p.Base, Cap: p.Cap}
	case "equal-jitter":
		pol = backoff.EqualJitter{Base: p.Base, Cap: p.Cap}
	case "decorrelated":
		pol = backoff.DecorrelatedJitter{Base: p.Base, Cap: p.Cap}
	default:
		pol = backoff.Immediate{}
	}
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	return pol, nil
}

// fixed waits the same delay after every failure.
type fixed struct{ d time.Duration }

func (f fixed) Delay(n int, _ time.Duration, _ backoff.Rand) time.Duration {
	if n <= 0 {
		return 0
	}
	return f.d
}

func (fixed) Validate() error { return nil }

// Result is what one run measured. The first eight fields are the
// contract of `stormguard storm --json`.
type Result struct {
	Strategy           string `json:"strategy"`
	Clients            int    `json:"clients"`
	ConnectAttempts    int64  `json:"connect_attempts"`
	ConnectFailures    int64  `json:"connect_failures"`
	PeakConnectsPerSec int64  `json:"peak_connects_per_sec"`
	// TimeToRecoverMS is null when fewer than 99% of clients recovered.
	TimeToRecoverMS *int64 `json:"time_to_recover_ms"`
	FailedCommands  int64  `json:"failed_commands"`
	// ListenOverflows is null when the counter could not be read.
	ListenOverflows *uint64 `json:"listen_overflows"`

	Scenario              string  `json:"scenario"`
	Instances             int     `json:"instances"`
	SourceAddrs           int     `json:"source_addrs"`
	Target                string  `json:"target"`
	RecoveredClients      int     `json:"recovered_clients"`
	RecoverP50MS          *int64  `json:"recover_p50_ms"`
	RecoverMaxMS          *int64  `json:"recover_max_ms"`
	PeakConnects1s        int64   `json:"peak_connects_1s"`
	ConnectsPerSec        float64 `json:"connects_per_sec"`
	DurationMS            int64   `json:"duration_ms"`
	ListenOverflowsSource string  `json:"listen_overflows_source"`
	ListenDrops           *uint64 `json:"listen_drops"`
	RejectedConnections   *uint64 `json:"rejected_connections"`
	ConnectionsReceived   *uint64 `json:"total_connections_received"`
	ValkeyCountersReset   bool    `json:"valkey_counters_reset,omitempty"`
	KilledClients         *int64  `json:"killed_clients,omitempty"`
	WarmupConnectAttempts int64   `json:"warmup_connect_attempts"`
	// ConnectsSource says where connect_attempts, connect_failures and
	// the timeline come from: the lab's dial hook, or (valkey-glide) the
	// kernel's Tcp counters of the namespace.
	ConnectsSource string `json:"connects_source"`
	// Timeline is dials per 100ms from the baselines just before the
	// disruption to the end.
	Timeline []int64           `json:"timeline_100ms"`
	Errors   map[string]string `json:"errors,omitempty"`
}

// PolicyFor is the per-client reconnect policy the lab gives strategy with
// the policy flags p (Immediate for stormguard and the libraries, which
// pace themselves). `stormguard simulate` uses it so that a simulated
// client runs exactly the lab's policy.
func PolicyFor(strategy string, p PolicyParams) (backoff.Policy, error) {
	return Config{Strategy: strategy, Policy: p}.policy()
}
