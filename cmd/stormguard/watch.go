package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"github.com/spf13/cobra"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/agent"
	"github.com/stormguard/stormguard/internal/defuse"
	"github.com/stormguard/stormguard/internal/journal"
	"github.com/stormguard/stormguard/internal/notify"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
)

type watchOpts struct {
	valkey          []string
	conn            valkeyConnFlags
	netns           string
	interval        time.Duration
	httpAddr        string
	events          string
	journalDir      string
	webhook         string
	alertmanager    string
	bearerTokenFile string
	maxStreams      int
	webConfigFile   string
	discoverEvery   time.Duration
	logLevel        string
	logFormat       string
	defuseMode      string
	defuseActions   []string
	defuseTTL       time.Duration
	defuseMax       time.Duration
	defuseRate      string
	defuseState     string
	ebpf            bool
}

func newWatchCmd() *cobra.Command {
	var o watchOpts
	cmd := &cobra.Command{
		Use:   "watch [--valkey ADDR]... [--interval D] [--http ADDR] [--events FILE] [--journal DIR] [--webhook URL]",
		Short: "Run the agent: gap-free storm telemetry, detector, alerts, journal and HTTP",
		Long: `Run the stormguard agent until SIGINT or SIGTERM (then flush and exit 0).

Targets: every --valkey given; with none, every local valkey-server and
redis-server process is discovered (its client ports and network namespace,
containers included) and followed as servers come and go.

Each target is sampled every --interval; the detector moves it between calm,
surge (early warning), storm (connections dropped or refused now) and
recovering. Every state change is logged, written to --events (JSON lines),
sent to --webhook / --alertmanager, and opens a storm capture in --journal
(from 60 s before onset until calm) for 'stormguard report'.

HTTP (default 127.0.0.1:9877, localhost only): /metrics (Prometheus),
/api/v1/state, /api/v1/samples, /api/v1/events, /api/v1/stream (server-sent
events), /healthz, and the live dashboard at /.

With --defuse auto, a storm arms the chosen mitigations (default: a
per-source SYN rate limit on the port, and a port-wide admission limit the
agent sizes from the connections Valkey completes) for --defuse-ttl, re-armed while the
storm lasts up to --defuse-max, and reverted once the target is calm. Every
arming and revert is an event and an alert. kill-idle is never automatic.

SIGHUP re-runs discovery and reopens the events file (for logrotate).`,
		Example: `  stormguard watch
  stormguard watch --valkey 127.0.0.1:6379 --events /var/log/stormguard/events.jsonl --journal /var/lib/stormguard
  stormguard watch --valkey valkey://monitor:secret@10.0.0.5:6379 --http 0.0.0.0:9877 --bearer-token-file /etc/stormguard/token
  stormguard watch --alertmanager http://127.0.0.1:9093 --webhook https://hooks.example.com/stormguard`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWatch(cmd.Context(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.valkey, "valkey", nil, "Valkey address to watch (repeatable); none = discover local servers")
	o.conn.register(f)
	f.StringVar(&o.netns, "netns", "", "network namespace of the --valkey targets (e.g. /var/run/netns/NAME)")
	f.DurationVar(&o.interval, "interval", 500*time.Millisecond, "sampling interval")
	f.BoolVar(&o.ebpf, "ebpf", true, ebpfFlagHelp)
	f.StringVar(&o.httpAddr, "http", "127.0.0.1:9877", "HTTP listen address (empty disables)")
	f.StringVar(&o.events, "events", "", "append state-change events to this file as JSON lines")
	f.StringVar(&o.journalDir, "journal", "", "write storm captures to this directory")
	f.StringVar(&o.webhook, "webhook", "", "POST each state change as JSON to this URL")
	f.StringVar(&o.alertmanager, "alertmanager", "", "Alertmanager base URL; alerts fire on surge/storm and resolve on calm")
	f.StringVar(&o.webConfigFile, "web.config.file", "", "Prometheus exporter-toolkit web configuration (TLS, basic auth), as node_exporter takes it")
	f.IntVar(&o.maxStreams, "http-max-streams", serve.DefaultMaxStreams, "most concurrent /api/v1/stream clients; one more gets 503")
	f.StringVar(&o.bearerTokenFile, "bearer-token-file", "", "require this bearer token on HTTP (all paths but /healthz)")
	f.DurationVar(&o.discoverEvery, "discover-interval", 5*time.Second, "how often to rescan for local servers")
	f.StringVar(&o.defuseMode, "defuse", "off", "off, or auto: arm --defuse-actions when a storm is detected, revert after calm")
	f.StringSliceVar(&o.defuseActions, "defuse-actions", []string{"ratelimit-syn", "ratelimit-global"}, "actions auto mode may arm: ratelimit-syn, ratelimit-global (the admission limit, sized from what Valkey completes), notrack, accept-cap, backlog")
	f.DurationVar(&o.defuseTTL, "defuse-ttl", time.Minute, "auto mode: each arming expires after this (re-armed while the storm lasts)")
	f.DurationVar(&o.defuseMax, "defuse-max", 10*time.Minute, "auto mode: longest one storm keeps mitigations armed")
	f.StringVar(&o.defuseRate, "defuse-rate", "20/s", "auto mode: SYN rate admitted per source (ratelimit-syn), and the lowest rate the admission limit (ratelimit-global) starts at; at least 5/s")
	f.StringVar(&o.defuseState, "defuse-state", "", "defuse state file (default "+defuse.DefaultStatePath+")")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	return cmd
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// checkFlags checks --interval and the HTTP flags before anything starts.
func (o *watchOpts) checkFlags() error {
	if o.interval < 10*time.Millisecond {
		return fmt.Errorf("--interval %s is too short (minimum 10ms)", o.interval)
	}
	if o.webConfigFile != "" {
		// Both would use the Authorization header.
		if o.bearerTokenFile != "" {
			return errors.New("--bearer-token-file and --web.config.file exclude each other: put basic_auth_users in the web config")
		}
		if o.httpAddr == "" {
			return errors.New("--web.config.file needs --http")
		}
		// Checked now, so a bad file is a usage error before sampling.
		if err := web.Validate(o.webConfigFile); err != nil {
			return fmt.Errorf("--web.config.file %s: %w", o.webConfigFile, err)
		}
	}
	if o.maxStreams < 1 {
		return fmt.Errorf("--http-max-streams %d: want at least 1", o.maxStreams)
	}
	return nil
}

// checkOutputs makes sure --events and --journal can be written, as the
// journal will (directories created as needed), so that a path that can
// never be written is a usage error at start rather than a stream of
// write errors in the log of an agent that otherwise runs. A write that
// fails later (disk full) is still only counted and logged.
func (o *watchOpts) checkOutputs() error {
	if o.events != "" {
		if err := os.MkdirAll(filepath.Dir(o.events), 0o755); err != nil {
			return fmt.Errorf("--events %s: %w", o.events, err)
		}
		f, err := os.OpenFile(o.events, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("--events: %w", err)
		}
		f.Close()
	}
	if o.journalDir != "" {
		if err := os.MkdirAll(o.journalDir, 0o755); err != nil {
			return fmt.Errorf("--journal %s: %w", o.journalDir, err)
		}
		f, err := os.CreateTemp(o.journalDir, ".write-check-*")
		if err != nil {
			return fmt.Errorf("--journal: %w", err)
		}
		f.Close()
		os.Remove(f.Name())
	}
	return nil
}

// autoDefuse turns the --defuse flags into the agent's auto-defuse
// settings (nil when off).
func (o *watchOpts) autoDefuse() (*agent.AutoDefuse, error) {
	switch o.defuseMode {
	case "off", "":
		return nil, nil
	case "auto":
	default:
		return nil, fmt.Errorf("--defuse %q: want off or auto", o.defuseMode)
	}
	rate, err := defuse.ParseRate(o.defuseRate)
	if err != nil {
		return nil, fmt.Errorf("--defuse-rate: %w", err)
	}
	auto := &agent.AutoDefuse{TTL: o.defuseTTL, Max: o.defuseMax, Rate: rate, StatePath: o.defuseState}
	for _, a := range o.defuseActions {
		act, err := defuse.ParseAction(a)
		if err != nil {
			return nil, fmt.Errorf("--defuse-actions: %w", err)
		}
		auto.Actions = append(auto.Actions, act)
	}
	return auto, nil
}

// serveHTTP listens on --http and serves h in the background.
// exporter-toolkit serves TLS and basic auth from --web.config.file
// (re-read per connection, so certificates can be rotated); without it,
// plain HTTP.
func (o *watchOpts) serveHTTP(h http.Handler, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on --http %s: %w", o.httpAddr, err)
	}
	// Idle keep-alive connections are closed after two minutes (longer
	// than any scrape interval), so clients that open connections and
	// leave them idle cannot pile up memory in the agent.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	webFlags := &web.FlagConfig{WebListenAddresses: &[]string{o.httpAddr}, WebConfigFile: &o.webConfigFile}
	go func() {
		if err := web.Serve(ln, srv, webFlags, log); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server failed", "err", err)
		}
	}()
	log.Info("serving HTTP", "addr", ln.Addr().String())
	return srv, nil
}

func runWatch(ctx context.Context, stderr io.Writer, o watchOpts) error {
	log, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return usageErr(err)
	}
	if err := o.checkFlags(); err != nil {
		return usageErr(err)
	}
	if err := o.checkOutputs(); err != nil {
		return usageErr(err)
	}
	var targets []source.Target
	for _, v := range o.valkey {
		t, err := resolveTarget(v, o.conn, o.netns)
		if err != nil {
			return usageErr(err)
		}
		targets = append(targets, t)
	}
	var user, password string
	if len(targets) == 0 {
		if o.conn.tlsSet() {
			// Discovery finds plain-TCP listeners only.
			return usageErr(errors.New("--cacert, --cert, --key and --sni need --valkey valkeys://…"))
		}
		var a addr.Addr
		if err := a.ApplyPassword(o.conn.passwordFile, os.Getenv); err != nil {
			return usageErr(err)
		}
		user, password = a.User, a.Password
	}
	for _, u := range []struct{ flag, v string }{{"--webhook", o.webhook}, {"--alertmanager", o.alertmanager}} {
		if u.v != "" && !strings.HasPrefix(u.v, "http://") && !strings.HasPrefix(u.v, "https://") {
			return usageErr(fmt.Errorf("%s %q: want an http:// or https:// URL", u.flag, u.v))
		}
	}
	var token string
	if o.bearerTokenFile != "" {
		if token, err = serve.ReadTokenFile(o.bearerTokenFile); err != nil {
			return usageErr(err)
		}
	}

	auto, err := o.autoDefuse()
	if err != nil {
		return usageErr(err)
	}

	hub := serve.NewHub(source.Names(), int(10*time.Minute/o.interval), 1000)
	jr := journal.Open(journal.Options{Dir: o.journalDir, EventsPath: o.events, Interval: o.interval, Logger: log})
	defer jr.Close()
	nctx, ncancel := context.WithCancel(context.Background())
	nt := notify.New(nctx, notify.Options{WebhookURL: o.webhook, AlertmanagerURL: o.alertmanager, Logger: log})
	defer func() { ncancel(); <-nt.Done() }()

	ag, err := agent.New(agent.Options{Targets: targets, Interval: o.interval, Version: version, DiscoverEvery: o.discoverEvery,
		User: user, Password: password, Hub: hub, AutoDefuse: auto, Journal: jr, Notifier: nt, Logger: log, NoEBPF: !o.ebpf})
	if err != nil {
		return usageErr(err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var srv *http.Server
	if o.httpAddr != "" {
		h := serve.Handler(hub, serve.Options{Version: version, BearerToken: token, Healthy: ag.Healthy, MaxStreams: o.maxStreams})
		if srv, err = o.serveHTTP(h, log); err != nil {
			return usageErr(err)
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: rescanning targets, reopening files")
				jr.Reopen()
				ag.Rescan(ctx)
			}
		}
	}()
	if len(targets) == 0 {
		log.Info("no --valkey given: discovering local valkey-server/redis-server processes")
	}
	runErr := ag.Run(ctx)
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
	}
	log.Info("stopped")
	return runErr
}
