package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/internal/lab"
	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

type stormOpts struct {
	target     string
	conn       valkeyConnFlags
	netns      string
	compare    string
	json       bool
	progress   bool
	restartCmd string
	defuse     string

	spawn      bool
	syncookies int
	spawnOpts  lab.Spawn

	cfg lab.Config
	// notice receives one-line notes about the run that are not progress
	// (stderr).
	notice io.Writer
}

// glideNote says whether this binary has the valkey-glide strategy.
func glideNote() string {
	if lab.GLIDEBuiltIn() {
		return "built in"
	}
	return "not built in"
}

// stormCountFlags checks the count flags whose 0 means "not given".
func stormCountFlags(cmd *cobra.Command, o *stormOpts) error {
	if !cmd.Flags().Changed("clients") {
		return errors.New("give --clients N (the fleet size, e.g. --clients 200)")
	}
	// Given, 0 is bad input.
	for _, c := range []struct {
		flag string
		v    int
	}{{"hosts", o.cfg.Hosts}, {"instances", o.cfg.Instances}} {
		if cmd.Flags().Changed(c.flag) && c.v < 1 {
			return fmt.Errorf("--%s must be at least 1, got %d", c.flag, c.v)
		}
	}
	return nil
}

func newStormCmd() *cobra.Command {
	var o stormOpts
	cmd := &cobra.Command{
		Use:   "storm --target ADDR --clients N --strategy S --scenario kill|restart|blip [--json]",
		Short: "Replay a connection storm against a real Valkey and measure it",
		Long: `Start N simulated clients against a Valkey, let them PING every --period, then
disrupt the server and measure how the fleet reconnects with the chosen
strategy: every connect attempt, failed connects and commands, the peak
connect rate (per 100ms bucket, scaled to per second), the time until 99% of
clients completed a PING again, the namespace's ListenOverflows delta and
Valkey's rejected_connections and total_connections_received deltas.

Scenarios: kill (CLIENT KILL TYPE normal SKIPME yes over a separate admin
connection), restart (--spawn restarts the lab's own valkey-server, or
--restart-cmd runs a command), blip (an nftables rule in the server's network
namespace drops packets to the port for --blip), slow (the server stalls for
--stall), failover (--spawn: the primary is killed and its replica promoted;
clients follow the service address; with --cluster a 3-shard cluster whose
own failover promotes the replica and cluster clients follow it), churn (no
disruption: every client reconnects per PING, like valkey-benchmark -k 0).
--defuse auto runs the watch agent with its auto mitigations on the server
during the run.

Strategies: ` + strings.Join(lab.Strategies(), ", ") + `.
By default every client is its own application instance (own dialer, own
backoff); --instances K splits the clients over K instances that each share
one dialer (stormguard) or one client library object (go-redis, valkey-go,
valkey-glide). valkey-glide links GLIDE's Rust core through cgo and is only in
binaries built with "make build-glide" (this one: ` + glideNote() + `); it
needs --netns or --spawn, because its connects are counted from the kernel's
Tcp counters of the server's namespace (with --hosts, the hosts'); with --tls
it needs --spawn (GLIDE verifies the server against the run's CA), and with
--cluster it runs GLIDE's ClusterClient.
On a loopback target each instance connects from its own source address
(127.0.0.1, 127.0.0.2, …), as instances on different hosts would; the server
and a per-source SYN limit then see a fleet. --source-addrs 1 sends every
connection from one address, like valkey-benchmark or a fleet behind NAT.

--spawn runs a throwaway valkey-server in a private network namespace (with
--somaxconn, --tcp-backlog, --maxclients, --syncookies) and removes it
afterwards. --hosts N puts the clients on N client hosts: namespaces joined
to the server's by veth pairs on a bridge, private addresses 10.77.k.1 that
exist only there; --rtt and --loss shape that link (--rtt with netem, or a
user-space delay line where the kernel has none). --compare a,b,c runs several strategies in turn (a fresh server
per strategy with --spawn) and prints a table, or a JSON array with --json.
See docs/lab.md.`,
		Example: `  stormguard storm --spawn --somaxconn 128 --clients 2000 --strategy immediate --scenario kill --json
  stormguard storm --spawn --clients 500 --scenario restart --compare immediate,glide,stormguard
  stormguard storm --spawn --hosts 4 --loss 1 --clients 2000 --strategy go-redis --scenario kill
  stormguard storm --target 10.0.0.5:6379 --netns /var/run/netns/valkey --clients 200 --strategy glide --scenario blip --blip 3s
  stormguard storm --spawn --somaxconn 128 --clients 2000 --scenario kill --compare immediate,stormguard,valkey-go,valkey-glide
  stormguard storm --spawn --tls --hosts 2 --setup auth --cluster --scenario failover --strategy valkey-glide --clients 200`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := stormCountFlags(cmd, &o); err != nil {
				return usageErr(err)
			}
			o.notice = cmd.ErrOrStderr()
			var errOut io.Writer
			if o.progress || stderrIsTTY() {
				errOut = cmd.ErrOrStderr()
			}
			return runStorm(cmd.Context(), cmd.OutOrStdout(), errOut, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.target, "target", "", "Valkey address HOST:PORT or valkey://[user:pass@]host:port (default with --spawn: the spawned server)")
	o.conn.register(f)
	f.StringVar(&o.netns, "netns", "", "network namespace of the server: every client socket is created there and kernel counters are read there")
	f.IntVar(&o.cfg.Clients, "clients", 0, "number of simulated clients")
	f.IntVar(&o.cfg.Instances, "instances", 0, "application instances the clients are split over, each sharing one dialer (default: one per client)")
	f.IntVar(&o.cfg.SourceAddrs, "source-addrs", 0, "loopback targets: source addresses 127.0.0.1… the instances are spread over (default: one per instance; 1: one for all)")
	f.StringVar(&o.cfg.Strategy, "strategy", "", "reconnect strategy: "+strings.Join(lab.Strategies(), ", "))
	f.StringVar(&o.compare, "compare", "", "comma-separated strategies to run in turn (or \"all\")")
	f.StringVar(&o.cfg.Scenario, "scenario", "kill", "disruption: "+strings.Join(lab.Scenarios(), ", "))
	f.BoolVar(&o.cfg.Cluster, "cluster", false, "failover with --spawn: a 3-shard cluster (3 primaries, 3 replicas) that promotes by itself; strategies go-redis, valkey-go or valkey-glide in cluster mode")
	f.BoolVar(&o.json, "json", false, "print one JSON object (an array with --compare)")
	f.BoolVar(&o.progress, "progress", false, "print progress on stderr even when it is not a terminal")
	f.DurationVar(&o.cfg.Period, "period", 100*time.Millisecond, "time between one client's PINGs")
	f.DurationVar(&o.cfg.ConnectTimeout, "connect-timeout", 2*time.Second, "connect timeout of the lab's own strategies (libraries keep theirs)")
	f.DurationVar(&o.cfg.WarmupConnectTimeout, "warmup-connect-timeout", 0, "connect timeout until every client is up (default: --connect-timeout); a fleet whose timeout is too short to start at once came up over a rolling deploy")
	f.DurationVar(&o.cfg.CommandTimeout, "command-timeout", time.Second, "timeout of each PING")
	f.IntVar(&o.cfg.PoolSize, "pool-size", 4, "connections per client of pool-unbounded")
	f.Float64Var(&o.cfg.Ramp, "ramp", 1000, "clients started per second during warm-up")
	f.DurationVar(&o.cfg.WarmupTimeout, "warmup-timeout", 60*time.Second, "how long every client may take to complete its first PING")
	f.DurationVar(&o.cfg.Hold, "hold", 6*time.Second, "how long the warmed-up fleet runs before the disruption")
	f.DurationVar(&o.cfg.Duration, "duration", 30*time.Second, "longest observation after the disruption; for --scenario churn, how long it runs (churn's default: 5s)")
	f.DurationVar(&o.cfg.Settle, "settle", time.Second, "observation after every client recovered")
	f.DurationVar(&o.cfg.Blip, "blip", 2*time.Second, "blip: how long packets to the port are dropped")
	f.DurationVar(&o.cfg.Stall, "stall", 2*time.Second, "slow: how long the server stalls (SIGSTOP with --spawn, else DEBUG SLEEP)")
	f.DurationVar(&o.spawnOpts.Down, "down", time.Second, "restart with --spawn: how long the server stays down")
	f.StringVar(&o.restartCmd, "restart-cmd", "", "restart scenario: shell command that restarts the server (clock starts when it starts)")
	f.DurationVar(&o.cfg.Policy.Delay, "delay", 100*time.Millisecond, "fixed: delay after each failure")
	f.IntVar(&o.cfg.Policy.GLIDE.Retries, "retries", backoff.GLIDEDefaultRetries, "glide: number of growing, jittered steps")
	f.IntVar(&o.cfg.Policy.GLIDE.Factor, "factor", backoff.GLIDEDefaultFactor, "glide: step factor in milliseconds")
	f.IntVar(&o.cfg.Policy.GLIDE.ExponentBase, "exponent-base", backoff.GLIDEDefaultExponentBase, "glide: growth base")
	f.IntVar(&o.cfg.Policy.GLIDE.JitterPercent, "jitter-percent", backoff.GLIDEDefaultJitterPercent, "glide: ± jitter in percent (0-100)")
	f.DurationVar(&o.cfg.Policy.Base, "base", 100*time.Millisecond, "full-jitter, equal-jitter, decorrelated: base delay")
	f.DurationVar(&o.cfg.Policy.Cap, "cap", 10*time.Second, "full-jitter, equal-jitter, decorrelated: largest delay")
	f.BoolVar(&o.cfg.TLS, "tls", false, "every connection speaks TLS: with --spawn, a TLS-only server with certificates made for the run; else the valkeys:// target's")
	f.StringVar(&o.cfg.Setup, "setup", "none", "what each new connection sends before its first PING: none, hello (HELLO 3 + CLIENT SETINFO), auth (HELLO 3 AUTH + CLIENT SETNAME as an ACL user made for the run)")
	f.IntVar(&o.cfg.Hosts, "hosts", 0, "--spawn: run the clients on N client hosts (namespaces on a bridge to the server's, 10.77.k.1)")
	f.DurationVar(&o.cfg.RTT, "rtt", 0, "--hosts: round trip added to every host's link (netem; a user-space delay line where the kernel has no netem)")
	f.Float64Var(&o.cfg.Loss, "loss", 0, "--hosts: percent of packets dropped each way on every host's link")
	f.StringVar(&o.defuse, "defuse", "off", "off, or auto: run the watch agent with --defuse auto and its default actions on the server for the whole run; its events go into the result (agent_events)")
	f.BoolVar(&o.spawn, "spawn", false, "run a throwaway valkey-server in a private network namespace")
	f.IntVar(&o.spawnOpts.Somaxconn, "somaxconn", 0, "--spawn: net.core.somaxconn in the namespace (kernel default)")
	f.StringVar(&o.spawnOpts.ServerCPUs, "server-cpus", "", "--spawn: pin valkey-server to these CPUs (e.g. 1 or 0-1,3) and the clients to the others")
	f.IntVar(&o.spawnOpts.TCPBacklog, "tcp-backlog", 0, "--spawn: valkey tcp-backlog (Valkey default 511)")
	f.IntVar(&o.spawnOpts.Maxclients, "maxclients", 0, "--spawn: valkey maxclients (default: enough for the run)")
	f.IntVar(&o.syncookies, "syncookies", -1, "--spawn: net.ipv4.tcp_syncookies 0, 1 or 2 (-1: leave the kernel's default)")
	return cmd
}

func stderrIsTTY() bool {
	f := os.Stderr
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// stormStrategies returns the strategies to run.
func stormStrategies(o stormOpts) ([]string, error) {
	if o.compare == "" {
		if o.cfg.Strategy == "" {
			return nil, errors.New("give --strategy or --compare")
		}
		return []string{o.cfg.Strategy}, nil
	}
	if o.cfg.Strategy != "" {
		return nil, errors.New("--strategy and --compare are mutually exclusive")
	}
	if o.compare == "all" {
		if !lab.GLIDEBuiltIn() && o.notice != nil {
			fmt.Fprintf(o.notice, "storm: --compare all: %s is not built into this binary (make build-glide); comparing the others\n", lab.GLIDEStrategy)
		}
		return lab.AvailableStrategies(), nil
	}
	var out []string
	for _, s := range strings.Split(o.compare, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(lab.Strategies(), s) {
			return nil, fmt.Errorf("--compare: unknown strategy %q (want %s)", s, strings.Join(lab.Strategies(), ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

// stormFlags names the flag of each lab.Config field, for errors.
var stormFlags = map[string]string{
	"Target": "--target", "NetNS": "--netns", "Spawn": "--spawn", "Restart": "--restart-cmd",
	"Clients": "--clients", "Instances": "--instances", "SourceAddrs": "--source-addrs",
	"Strategy": "--strategy", "Scenario": "--scenario", "Period": "--period",
	"ConnectTimeout": "--connect-timeout", "WarmupConnectTimeout": "--warmup-connect-timeout", "CommandTimeout": "--command-timeout",
	"PoolSize": "--pool-size", "Ramp": "--ramp", "WarmupTimeout": "--warmup-timeout",
	"Setup": "--setup", "TLS": "--tls", "Hosts": "--hosts", "RTT": "--rtt", "Loss": "--loss", "Hold": "--hold", "Duration": "--duration", "Settle": "--settle", "Blip": "--blip", "Stall": "--stall", "Cluster": "--cluster",
	"Policy": "policy flags", "Policy.Delay": "--delay", "Policy.Base": "--base", "Policy.Cap": "--cap",
	"Spawn.Somaxconn": "--somaxconn", "Spawn.TCPBacklog": "--tcp-backlog",
	"Spawn.Maxclients": "--maxclients", "Spawn.Syncookies": "--syncookies", "Spawn.Down": "--down", "Spawn.ServerCPUs": "--server-cpus",
}

// stormUsageErr turns a lab error into a usage error (exit 2) that names
// flags rather than Config fields.
func stormUsageErr(err error) error {
	var ce *lab.ConfigError
	if errors.As(err, &ce) {
		return usageErr(errors.New(ce.Render(func(field string) string {
			if f, ok := stormFlags[field]; ok {
				return f
			}
			return field
		})))
	}
	return usageErr(err)
}

// stormConfig maps the flags onto a lab.Config.
func stormConfig(o stormOpts) (lab.Config, error) {
	cfg := o.cfg
	// GLIDE treats factor and base 0 as its defaults; say so here, so
	// that an all-zero GLIDE given on the command line is not taken for
	// "unset".
	if cfg.Policy.GLIDE.Factor == 0 {
		cfg.Policy.GLIDE.Factor = backoff.GLIDEDefaultFactor
	}
	if cfg.Policy.GLIDE.ExponentBase == 0 {
		cfg.Policy.GLIDE.ExponentBase = backoff.GLIDEDefaultExponentBase
	}
	if o.spawn {
		sp := o.spawnOpts
		if o.syncookies != -1 {
			v := o.syncookies
			sp.Syncookies = &v
		}
		cfg.Spawn = &sp
		if o.conn.needValkey() != nil {
			return cfg, errors.New("--password-file, --cacert, --cert, --key and --sni are for --target; --spawn makes its own server")
		}
	} else if o.spawnOpts != (lab.Spawn{Down: o.spawnOpts.Down}) || o.syncookies != -1 {
		return cfg, errors.New("--somaxconn, --tcp-backlog, --maxclients, --syncookies and --server-cpus configure the server --spawn starts")
	}
	cfg.NetNS = o.netns
	if o.target != "" {
		a, err := o.conn.address(o.target)
		if err != nil {
			return cfg, err
		}
		switch {
		case cfg.TLS && !a.TLS:
			return cfg, fmt.Errorf("--tls: target %s is not TLS (give valkeys://HOST:PORT, or --spawn for a TLS server made for the run)", a.HostPort())
		case a.TLS:
			tc, err := valkeyconn.TLSConfig(a)
			if err != nil {
				return cfg, err
			}
			cfg.TLS, cfg.TLSConfig = true, tc
		}
		if o.netns != "" {
			if err := netns.Check(o.netns); err != nil {
				return cfg, err
			}
		}
		cfg.Target, cfg.User, cfg.Password = a.HostPort(), a.User, a.Password
	}
	switch o.defuse {
	case "off", "":
	case "auto":
		if cfg.NetNS == "" && cfg.Spawn == nil {
			return cfg, errors.New("--defuse auto arms rules in the server's namespace: give --spawn or --netns")
		}
	default:
		return cfg, fmt.Errorf("--defuse %q: want off or auto", o.defuse)
	}
	if o.restartCmd != "" {
		cmdline := o.restartCmd
		cfg.Restart = func(ctx context.Context, down func()) error {
			down()
			if out, err := exec.CommandContext(ctx, "sh", "-c", cmdline).CombinedOutput(); err != nil {
				return fmt.Errorf("--restart-cmd: %v: %s", err, oneLine(string(out)))
			}
			return nil
		}
	}
	return cfg, nil
}

func runStorm(ctx context.Context, out, progress io.Writer, o stormOpts) error {
	strategies, err := stormStrategies(o)
	if err != nil {
		return usageErr(err)
	}
	cfg, err := stormConfig(o)
	if err != nil {
		return usageErr(err)
	}
	need := 0
	for _, s := range strategies {
		c := cfg
		c.Strategy = s
		if err := c.Validate(); err != nil {
			return stormUsageErr(err)
		}
		need = max(need, lab.FDsNeeded(c))
	}
	if err := lab.RaiseFDLimit(need); err != nil {
		return usageErr(err)
	}
	var results []*lab.Result
	for _, s := range strategies {
		c := cfg
		c.Strategy = s
		c.Progress = progress
		if o.defuse == "auto" {
			c.Watch = stormWatch(progress)
		}
		res, err := lab.Run(ctx, c)
		if err != nil {
			if errors.Is(err, lab.ErrConfig) || errors.Is(err, lab.ErrUnreachable) {
				return stormUsageErr(err)
			}
			return fmt.Errorf("storm %s: %w", s, err)
		}
		results = append(results, res)
	}
	if o.json {
		enc := json.NewEncoder(out)
		if o.compare == "" {
			return enc.Encode(results[0])
		}
		return enc.Encode(results)
	}
	writeStormTable(out, results)
	return nil
}

func writeStormTable(out io.Writer, rs []*lab.Result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STRATEGY\tCLIENTS\tCONNECTS\tCONN_FAIL\tPEAK/S\tRECOVER_MS\tP50_MS\tFAILED_CMDS\tOVERFLOWS\tREJECTED\tGOODPUT_MIN\tSERVER_CPU%\t")
	f2 := func(p *float64, scale float64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatFloat(*p*scale, 'f', 0, 64)
	}
	i64 := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatInt(*p, 10)
	}
	u64 := func(p *uint64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatUint(*p, 10)
	}
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s%%\t%s\t\n", r.Strategy, r.Clients, r.ConnectAttempts,
			r.ConnectFailures, r.PeakConnectsPerSec, i64(r.TimeToRecoverMS), i64(r.RecoverP50MS),
			r.FailedCommands, u64(r.ListenOverflows), u64(r.RejectedConnections),
			f2(r.GoodputMinRatio, 100), f2(r.ServerCPUPercent, 1))
	}
	tw.Flush()
	for _, r := range rs {
		for k, v := range r.Errors {
			fmt.Fprintf(out, "%s: %s unavailable: %s\n", r.Strategy, k, v)
		}
	}
}
