package lab

import (
	"context"
	"crypto/tls"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/stormguard/stormguard/backoff"
)

// Config describes one storm run. Zero fields mean the documented default.
type Config struct {
	// Target is the host:port the clients dial. Empty with Spawn.
	Target string
	// User and Password authenticate every connection (AUTH).
	User, Password string
	// NetNS makes every socket in the run be created in that namespace;
	// kernel counters are read there too. Empty with Spawn.
	NetNS string
	// Spawn, when set, makes the run start its own valkey-server in a
	// fresh network namespace and remove both afterwards; Target and
	// NetNS then come from it.
	Spawn *Spawn
	// Hosts runs the clients on that many client hosts (needs Spawn):
	// network namespaces joined to the server's by veth pairs on a
	// bridge, host k at 10.77.(k+1).1, Valkey at 10.77.0.1; instance k
	// runs on host k mod Hosts. 0: clients in the server's namespace.
	Hosts int
	// RTT adds this round trip to every host's link, RTT/2 each way:
	// with netem where the kernel has it, else with a user-space delay
	// line (sandbox.DelayLine); needs Hosts.
	RTT time.Duration
	// forceDelayLine uses the delay line even where netem exists (tests).
	forceDelayLine bool
	// Loss drops this percentage of packets each way on every host's
	// link; needs Hosts.
	Loss float64
	// TLS makes every connection (clients and admin) speak TLS. With
	// Spawn the run makes its own certificates and a TLS-only server;
	// otherwise TLSConfig is the outside server's.
	TLS       bool
	TLSConfig *tls.Config
	// Setup is what each new connection sends before its first PING:
	// one of Setups ("none" when empty). auth with Spawn makes an ACL
	// user for the run; otherwise it needs User and Password.
	Setup string
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
	// Strategy is one of Strategies().
	Strategy string
	// Policy holds the reconnect policy settings of the strategies that
	// are a backoff policy (fixed, glide, the jitter ones). A zero
	// Policy.GLIDE means GLIDE's defaults.
	Policy backoff.Params
	// Scenario is one of Scenarios().
	Scenario string
	// Cluster (failover scenario with Spawn) runs a 3-shard Valkey
	// cluster instead of a primary + replica: the cluster itself promotes
	// the killed primary's replica, and cluster clients (go-redis,
	// valkey-go, valkey-glide's ClusterClient) follow the topology.
	Cluster bool
	// Period between one client's PINGs (100ms).
	Period time.Duration
	// ConnectTimeout bounds a dial of the lab's own strategies (2s, as
	// GLIDE); library strategies keep their own defaults.
	ConnectTimeout time.Duration
	// WarmupConnectTimeout replaces ConnectTimeout (for the lab's own
	// strategies and stormguard) until the fleet is up: a fleet whose
	// connect timeout is too short to start all at once (e.g. 250 ms over
	// TLS) came up over a rolling deploy in real life. 0: ConnectTimeout.
	WarmupConnectTimeout time.Duration
	// Watch, when set, watches the server for the whole run (storm
	// --defuse auto runs the watch agent); its events go into the result.
	Watch WatchFunc
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
	// Stall is how long the slow scenario stalls the server (2s).
	Stall time.Duration
	// Restart restarts an outside server for the restart scenario (with
	// Spawn the lab restarts its own). It must call down() once the
	// server is gone (or the restart command starts), which starts the
	// recovery clock.
	Restart func(ctx context.Context, down func()) error
	// Progress, if set, receives a line per phase and per second.
	Progress io.Writer
}

// Spawn configures the valkey-server a run starts for itself. Zero fields
// mean the kernel's or Valkey's default.
type Spawn struct {
	// Somaxconn is net.core.somaxconn in the server's namespace.
	Somaxconn int
	// Syncookies is net.ipv4.tcp_syncookies (0, 1 or 2) when set.
	Syncookies *int
	// TCPBacklog is Valkey's tcp-backlog.
	TCPBacklog int
	// Maxclients is Valkey's maxclients (0: enough for the run, at least
	// 10000).
	Maxclients int
	// ServerCPUs pins valkey-server to these CPUs (a list as taskset -c
	// takes it, "1" or "0-1,3") and the run's clients to the others.
	ServerCPUs string
	// Down is how long the restart scenario keeps the server down
	// (the CLI's default is 1s).
	Down time.Duration
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
	if c.Setup == "" {
		c.Setup = "none"
	}
	if c.Strategy == "glide" && c.Policy.GLIDE == (backoff.GLIDE{}) {
		c.Policy.GLIDE = backoff.DefaultGLIDE()
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
	def(&c.Stall, 2*time.Second)
	return c
}

// netnsKnown reports whether the run will have a server namespace: given,
// or its own.
func (c Config) netnsKnown() bool { return c.NetNS != "" || c.Spawn != nil }

// Validate reports the first thing wrong with c as a *ConfigError (which
// wraps ErrConfig). Call it on a Config with defaults applied, as Run does.
func (c Config) Validate() error {
	if err := c.validateServer(); err != nil {
		return err
	}
	switch {
	case c.Clients < 1:
		return bad("Clients", "{Clients} must be at least 1, got %d", c.Clients)
	case c.Instances < 0:
		return bad("Instances", "{Instances} must not be negative, got %d", c.Instances)
	case c.Instances > c.Clients:
		return bad("Instances", "{Instances} %d exceeds {Clients} %d", c.Instances, c.Clients)
	case c.Hosts < 0 || c.Hosts > MaxHosts:
		return bad("Hosts", "{Hosts} must be within 1..%d, got %d", MaxHosts, c.Hosts)
	case c.Hosts > 0 && c.Spawn == nil:
		return bad("Hosts", "{Hosts} builds client hosts around the lab's own server: give {Spawn}")
	case c.RTT < 0:
		return bad("RTT", "{RTT} must not be negative, got %s", c.RTT)
	case c.Loss < 0 || c.Loss >= 100:
		return bad("Loss", "{Loss} is a percentage below 100, got %g", c.Loss)
	case (c.RTT > 0 || c.Loss > 0) && c.Hosts == 0:
		return bad("Hosts", "{RTT} and {Loss} shape the client hosts' link: give {Hosts}")
	case c.Hosts > 0 && c.SourceAddrs > 1:
		return bad("SourceAddrs", "{SourceAddrs} spreads clients over loopback addresses; with {Hosts} each host has its own")
	case !slices.Contains(Setups, c.Setup):
		return bad("Setup", "{Setup}: unknown setup %q (want one of %s)", c.Setup, strings.Join(Setups, ", "))
	case c.Setup == "auth" && c.Spawn == nil && c.Password == "":
		return bad("Setup", "{Setup} auth needs an ACL user: {Spawn} makes one for the run, or give a user and password in {Target}")
	case c.TLS && c.Spawn == nil && c.TLSConfig == nil:
		return bad("TLS", "{TLS} needs {Spawn} (a TLS-only server with certificates made for the run) or a TLS {Target}")
	case c.SourceAddrs < 0:
		return bad("SourceAddrs", "{SourceAddrs} must not be negative, got %d", c.SourceAddrs)
	case c.SourceAddrs > maxSourceAddrs:
		return bad("SourceAddrs", "{SourceAddrs} %d is more than the %d loopback addresses the lab uses", c.SourceAddrs, maxSourceAddrs)
	case c.PoolSize < 0:
		return bad("PoolSize", "{PoolSize} must not be negative, got %d", c.PoolSize)
	case c.Ramp < 0:
		return bad("Ramp", "{Ramp} must not be negative, got %g", c.Ramp)
	case c.Cluster && c.Scenario != "failover":
		return bad("Cluster", "{Cluster} runs a cluster for the failover {Scenario} only, not %q", c.Scenario)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"Period", c.Period}, {"ConnectTimeout", c.ConnectTimeout}, {"WarmupConnectTimeout", c.WarmupConnectTimeout}, {"CommandTimeout", c.CommandTimeout},
		{"WarmupTimeout", c.WarmupTimeout}, {"Hold", c.Hold}, {"Duration", c.Duration},
		{"Settle", c.Settle}, {"Blip", c.Blip}, {"Stall", c.Stall}, {"Policy.Delay", c.Policy.Delay},
		{"Policy.Base", c.Policy.Base}, {"Policy.Cap", c.Policy.Cap},
	} {
		if d.v < 0 {
			return bad(d.field, "{%s} must not be negative, got %s", d.field, d.v)
		}
	}
	st, ok := strategies.get(c.Strategy)
	if !ok {
		return bad("Strategy", "{Strategy}: unknown strategy %q (want one of %s)", c.Strategy, strings.Join(Strategies(), ", "))
	}
	if err := st.check(c); err != nil {
		return err
	}
	sc, ok := scenarios.get(c.Scenario)
	if !ok {
		return bad("Scenario", "{Scenario}: unknown scenario %q (want one of %s)", c.Scenario, strings.Join(Scenarios(), ", "))
	}
	return sc.check(c)
}

// validateServer checks the fields that say which server the run uses.
func (c Config) validateServer() error {
	if c.Spawn == nil {
		if c.Target == "" {
			return bad("Target", "no {Target} address (give one, or {Spawn})")
		}
		return nil
	}
	s := c.Spawn
	switch {
	case c.Target != "":
		return bad("Target", "{Spawn} starts its own server: do not also give {Target}")
	case c.NetNS != "":
		return bad("NetNS", "{Spawn} makes its own namespace: do not also give {NetNS}")
	case c.Restart != nil:
		return bad("Restart", "{Restart} is for an outside server; {Spawn} restarts its own")
	case s.Somaxconn < 0:
		return bad("Spawn.Somaxconn", "{Spawn.Somaxconn} must not be negative, got %d", s.Somaxconn)
	case s.TCPBacklog < 0:
		return bad("Spawn.TCPBacklog", "{Spawn.TCPBacklog} must not be negative, got %d", s.TCPBacklog)
	case s.Maxclients < 0:
		return bad("Spawn.Maxclients", "{Spawn.Maxclients} must not be negative, got %d", s.Maxclients)
	case s.Down < 0:
		return bad("Spawn.Down", "{Spawn.Down} must not be negative, got %s", s.Down)
	case s.Syncookies != nil && (*s.Syncookies < 0 || *s.Syncookies > 2):
		return bad("Spawn.Syncookies", "{Spawn.Syncookies} must be 0, 1 or 2, got %d", *s.Syncookies)
	}
	return nil
}
