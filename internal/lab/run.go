package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// run is one storm in progress.
type run struct {
	cfg      Config // with defaults, Target and NetNS resolved
	strategy strategy
	scenario scenario
	dialer   *sourceDialer
	sources  int // source addresses the instances are spread over (≤1: the kernel's choice)
	rec      *recorder
	adm      *admin
	res      *Result
	// restart restarts the server (restart scenario).
	restart func(ctx context.Context, down func()) error
	// adminDials counts the admin connection's dials, which the kernel
	// counters (valkey-glide) see and the lab subtracts.
	adminDials atomic.Int64
	kd         *kernelDials // valkey-glide's and redis-py's connects, from the kernel
	// connectTimeout is the lab strategies' connect timeout now:
	// WarmupConnectTimeout until the fleet is up, then ConnectTimeout.
	connectTimeout atomic.Int64
	// warming is true until every client has come up once.
	warming atomic.Bool
	// py are the redis-py strategy's Python processes.
	pyMu sync.Mutex
	py   []*redisPy
	// svc is the service address after a failover (nil: cfg.Target).
	svc atomic.Pointer[string]
	// clusterReplica is the replica of the lab's server in a cluster
	// run, the one the cluster promotes.
	clusterReplica string
	// clusterNodes are the cluster's node addresses, the cluster
	// clients' seed list.
	clusterNodes []string
	// hostDialers dial from the client hosts (Config.Hosts): instance k
	// runs on host k mod Hosts.
	hostDialers []*sourceDialer
	hostAddrs   []string
	rttMethod   string           // how the hosts' links are delayed (sandbox.RTTMethod)
	hostNetNS   []string         // the hosts' namespaces, for clients that dial by themselves (redis-py)
	sb          *sandbox.Sandbox // the run's own server (Spawn)
	// serverCPUs and clientCPUs are the pinning (Spawn.ServerCPUs).
	serverCPUs, clientCPUs string
	// somaxconn and tcpBacklog are the spawned server's accept-queue
	// settings (0: not spawned), recorded for simulate --calibrate.
	somaxconn, tcpBacklog int
	tls                   *runTLS // the run's certificates (Spawn with TLS)
	// aclPath is the run's ACL file (Spawn with Setup auth), which the
	// failover scenario's other servers load too.
	aclPath string
	cleanup []func() // run in reverse by close
}

// adminEndpoint is the admin connection's server: its dial is never a
// client's, comes from the kernel's choice of source address and is
// counted in adminDials; TLS and credentials are the run's.
func (r *run) adminEndpoint() valkeyconn.Endpoint { return r.endpoint(r.cfg.Target) }

// endpoint is an admin connection to addr (the target, or the failover
// scenario's replica).
func (r *run) endpoint(addr string) valkeyconn.Endpoint {
	return valkeyconn.Endpoint{Addr: addr, User: r.cfg.User, Password: r.cfg.Password, TLS: r.cfg.TLSConfig,
		Dial: func(ctx context.Context, _ *net.Dialer) (net.Conn, error) {
			r.adminDials.Add(1)
			return r.dialer.from(netip.Addr{})(ctx, "tcp", addr)
		}}
}

// countedDial returns the DialFunc of one instance: its connections come
// from the instance's source address, and every dial is counted.
func (r *run) countedDial(instance int) DialFunc {
	var src netip.Addr
	if r.sources > 1 && len(r.hostDialers) == 0 {
		src = sourceAddr(instance % r.sources)
	}
	base := r.dialer.from(src)
	if len(r.hostDialers) > 0 {
		// The host's own address, the kernel's choice there.
		base = r.hostDialers[instance%len(r.hostDialers)].from(netip.Addr{})
	}
	// A connection is up once its TLS handshake (if any) is done: a
	// failed handshake is a failed connect.
	base = withTLS(base, r.cfg.TLSConfig)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == r.cfg.Target {
			// The service address of the moment (failover).
			addr = r.target()
		}
		r.rec.dial()
		c, err := base(ctx, network, addr)
		if err != nil {
			r.rec.dialFailed(err)
		}
		return c, err
	}
}

// timedDial bounds an instance's countedDial by the lab strategies'
// connect timeout (the warm-up one until the fleet is up).
func (r *run) timedDial(instance int) DialFunc {
	dial := r.countedDial(instance)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return withTimeout(dial, time.Duration(r.connectTimeout.Load()))(ctx, network, addr)
	}
}

// warmupConnectTimeout is the connect timeout until the fleet is up.
func (c Config) warmupConnectTimeout() time.Duration {
	if c.WarmupConnectTimeout > 0 {
		return c.WarmupConnectTimeout
	}
	return c.ConnectTimeout
}

func (r *run) progress(format string, a ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "storm %s/%s: "+format+"\n", append([]any{r.cfg.Strategy, r.cfg.Scenario}, a...)...)
	}
}

func (r *run) onClose(f func()) { r.cleanup = append(r.cleanup, f) }

func (r *run) close() {
	for i := len(r.cleanup) - 1; i >= 0; i-- {
		r.cleanup[i]()
	}
}

// FDsNeeded estimates the file descriptors a run with cfg holds at once.
func FDsNeeded(cfg Config) int {
	cfg = cfg.withDefaults()
	t := traits{connsPerClient: 1, fdsPerInstance: 2}
	if st, ok := strategies.get(cfg.Strategy); ok {
		t = st.traits(cfg)
	}
	return cfg.Clients*t.connsPerClient + t.fdsPerInstance*cfg.Instances + 256 + 2*prefetch + 32*cfg.Hosts
}

// Run replays one storm and measures it. ctx cancellation stops it early
// (an error); everything the run made (clients, a spawned server and its
// namespace, firewall rules) is removed before it returns.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	r, err := newRun(cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()
	if err := r.prepare(ctx); err != nil {
		return nil, err
	}
	return r.run(ctx)
}

// newRun makes a run of cfg with its defaults, once it is valid; close
// removes whatever prepare and run made.
func newRun(cfg Config) (*run, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg}
	r.connectTimeout.Store(int64(cfg.warmupConnectTimeout()))
	r.warming.Store(true)
	r.strategy, _ = strategies.get(cfg.Strategy)
	r.scenario, _ = scenarios.get(cfg.Scenario)
	return r, nil
}

// prepare starts the server (Spawn), the dialer and the admin connection,
// and checks that the server answers.
func (r *run) prepare(ctx context.Context) error {
	cfg := &r.cfg
	r.restart = cfg.Restart
	if cfg.Spawn != nil {
		if err := r.spawn(ctx); err != nil {
			return err
		}
	}
	sources, err := sourceCount(ctx, *cfg, r.strategy.traits(*cfg).ownSource || cfg.Hosts > 0)
	if err != nil {
		return err
	}
	if cfg.Hosts > 0 {
		sources = len(r.hostDialers)
	}
	r.sources = sources
	if r.dialer, err = newSourceDialer(cfg.NetNS, prefetch); err != nil {
		return err
	}
	r.onClose(r.dialer.close)
	horizon := cfg.WarmupTimeout + cfg.Hold + cfg.Duration + cfg.Settle + cfg.Blip + cfg.Stall + time.Minute
	r.rec = newRecorder(cfg.Clients, horizon)
	r.res = &Result{Strategy: cfg.Strategy, Scenario: cfg.Scenario, Clients: cfg.Clients,
		Instances: cfg.Instances, SourceAddrs: max(sources, 1), Target: cfg.Target, Errors: map[string]string{},
		Hosts: cfg.Hosts, HostAddrs: r.hostAddrs, LossPercent: cfg.Loss, Setup: cfg.Setup, TLS: cfg.TLSConfig != nil,
		ServerCPUs: r.serverCPUs, ClientCPUs: r.clientCPUs}
	if r.somaxconn > 0 {
		r.res.Somaxconn, r.res.TCPBacklog = &r.somaxconn, &r.tcpBacklog
	}
	if cfg.Strategy == GLIDEStrategy && cfg.Setup == "none" {
		r.res.Setup = "hello (valkey-glide always sends HELLO 3 and CLIENT SETINFO)"
	}
	if cfg.RTT > 0 {
		ms := float64(cfg.RTT) / float64(time.Millisecond)
		r.res.RTTMS = &ms
		if r.rttMethod != "" {
			r.res.RTTMethod = &r.rttMethod
		}
	}
	if cfg.Spawn != nil {
		r.res.Target = "spawned " + cfg.Target + " in " + cfg.NetNS
	}
	r.adm = &admin{ep: r.adminEndpoint(), stall: cfg.Stall}
	r.onClose(func() { r.adm.close() }) // the failover scenario replaces it
	if err := r.adm.ping(ctx); err != nil {
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, cfg.Target, err)
	}
	if err := r.checkRoom(ctx); err != nil {
		return err
	}
	if cfg.Scenario == "failover" && cfg.Cluster {
		return r.startCluster(ctx)
	}
	if cfg.Scenario == "failover" {
		return r.startReplica(ctx)
	}
	return nil
}

// checkRoom refuses a fleet the target's maxclients cannot hold at once:
// its warm-up waits for every client to complete a PING on a connection it
// keeps, so it would only end, after --warmup-timeout, with "max number of
// clients reached". Churn clients hold no connection between PINGs, the
// clients of a shared instance (--instances below --clients) share a
// library's pool of unknown size, and a target that does not answer
// CONFIG GET (ACL) is left to the warm-up.
func (r *run) checkRoom(ctx context.Context) error {
	if r.scenario.traits().churn || r.cfg.Cluster || r.cfg.Instances != r.cfg.Clients {
		return nil
	}
	var maxclients, connected int
	err := r.adm.do(ctx, adminTimeout, func(ctx context.Context, c valkey.Client) error {
		m, err := valkeyconn.ConfigGet(ctx, c, "maxclients")
		if err != nil {
			return err
		}
		if maxclients, err = strconv.Atoi(m["maxclients"]); err != nil {
			return fmt.Errorf("CONFIG GET maxclients: %q", m["maxclients"])
		}
		info, err := valkeyconn.Info(ctx, c, "clients")
		if err != nil {
			return err
		}
		connected, _ = strconv.Atoi(info["connected_clients"])
		return nil
	})
	if err != nil {
		r.progress("maxclients not checked: %v", err)
		return nil
	}
	need := r.cfg.Clients * r.strategy.traits(r.cfg).connsPerClient
	if connected+need > maxclients {
		return bad("Clients", "{Clients} %d need %d connections at once, but the target's maxclients is %d with %d connected now: the warm-up could never finish (raise maxclients or run fewer clients)",
			r.cfg.Clients, need, maxclients, connected)
	}
	return nil
}

// baseline is what the run read just before the disruption.
type baseline struct {
	ext                map[string]uint64
	extErr             error
	info               map[string]uint64
	infoErr            error
	dials, fails, cmds int64
	at                 time.Time // the timeline starts here
	cpu                float64   // server CPU seconds (INFO cpu)
	cpuErr             error
}

// run drives the phases: launch and warm-up, hold, baseline, disruption,
// observation, measurement.
func (r *run) run(ctx context.Context) (*Result, error) {
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var insts []instance
	var instMu sync.Mutex
	defer func() {
		cancel()
		wg.Wait()
		for _, in := range insts {
			in.close()
		}
	}()
	stopWatch, err := r.startWatch(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	if r.strategy.traits(r.cfg).kernelDials {
		if err := r.countKernelDials(cctx, &wg); err != nil {
			return nil, err
		}
	}
	launchErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if r.loopChurn() {
			// The churn generator: one event loop for every client.
			if err := r.churnLoop(cctx); err != nil {
				launchErr <- fmt.Errorf("churn loop: %w", err)
			}
			return
		}
		r.launch(cctx, &wg, func(in instance) {
			instMu.Lock()
			insts = append(insts, in)
			instMu.Unlock()
		}, launchErr)
	}()
	if err := r.warmUp(ctx, launchErr); err != nil {
		return nil, err
	}
	r.connectTimeout.Store(int64(r.cfg.ConnectTimeout))
	r.warming.Store(false)
	if !r.scenario.traits().churn {
		r.progress("all %d clients up; holding %s", r.cfg.Clients, r.cfg.Hold)
		r.rec.holding.Store(true)
		if !sleepCtx(ctx, r.cfg.Hold) {
			return nil, ctx.Err()
		}
		r.rec.holding.Store(false)
	}
	base := r.baseline(ctx)
	started := time.Now()
	t0, wait, err := r.disrupt(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.cfg.Scenario, err)
	}
	r.progress("disrupted (%s)", r.cfg.Scenario)
	tEnd, err := r.observe(ctx, t0)
	if err != nil {
		return nil, err
	}
	if r.kd != nil {
		r.kd.sample()
	}
	if err := wait(); err != nil {
		return nil, fmt.Errorf("%s: %w", r.cfg.Scenario, err)
	}
	dials, fails, cmds := r.rec.dials.Load(), r.rec.dialFails.Load(), r.rec.failedCmds.Load()
	cancel()
	r.measure(ctx, base, started, t0, tEnd, dials-base.dials, fails-base.fails, cmds-base.cmds)
	for _, ev := range stopWatch() {
		ev.TMS = ev.Time.Sub(t0).Milliseconds()
		r.res.AgentEvents = append(r.res.AgentEvents, ev)
	}
	return r.res, nil
}

// countKernelDials starts counting the strategy's connects in the kernel
// (see kernelDials), from before its first client on.
// With client hosts the clients dial from the hosts' namespaces: their
// counters are summed, and the admin connection (in the server's
// namespace) is not among them.
func (r *run) countKernelDials(ctx context.Context, wg *sync.WaitGroup) error {
	nss, admin := []string{r.cfg.NetNS}, r.adminDials.Load
	if len(r.hostNetNS) > 0 {
		nss, admin = r.hostNetNS, func() int64 { return 0 }
	}
	snmp, err := openTCPSNMP(nss...)
	if err != nil {
		return err
	}
	r.onClose(snmp.close)
	if r.kd, err = newKernelDials(snmp, r.rec, admin); err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.kd.run(ctx)
	}()
	return nil
}

// launch starts the instances and their clients: instance k owns clients
// [k·N/K, (k+1)·N/K); clients start at Ramp per second.
func (r *run) launch(ctx context.Context, wg *sync.WaitGroup, started func(instance), errc chan<- error) {
	cfg := r.cfg
	start := time.Now()
	id := 0
	for k := 0; k < cfg.Instances && ctx.Err() == nil; k++ {
		hi := (k + 1) * cfg.Clients / cfg.Instances
		in, err := r.strategy.instance(ctx, r, k)
		if err != nil {
			errc <- err
			return
		}
		started(in)
		for ; id < hi; id++ {
			if cfg.Ramp > 0 {
				at := start.Add(time.Duration(float64(id) / cfg.Ramp * float64(time.Second)))
				if !sleepCtx(ctx, time.Until(at)) {
					return
				}
			}
			wg.Add(1)
			go func(id int) {
				defer wg.Done()
				in.client(ctx, id)
			}(id)
		}
	}
}

// warmUp waits until every client has completed a PING.
func (r *run) warmUp(ctx context.Context, launchErr <-chan error) error {
	cfg := r.cfg
	r.progress("warm-up: starting %d clients in %d instances from %d source addresses at %g/s", cfg.Clients, cfg.Instances, r.res.SourceAddrs, cfg.Ramp)
	deadline := time.Now().Add(cfg.WarmupTimeout)
	lastTick := time.Now()
	for r.rec.warmCount.Load() < int64(cfg.Clients) {
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: only %d of %d clients completed a PING within %s (last error: %s)",
				r.rec.warmCount.Load(), cfg.Clients, cfg.WarmupTimeout, r.rec.lastError())
		}
		select {
		case err := <-launchErr:
			return err
		default:
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return ctx.Err()
		}
		if time.Since(lastTick) >= time.Second {
			lastTick = time.Now()
			r.progress("warm-up: %d/%d clients up", r.rec.warmCount.Load(), cfg.Clients)
		}
	}
	if r.kd != nil {
		r.kd.sample()
	}
	r.res.WarmupConnectAttempts = r.rec.dials.Load()
	return nil
}

// baseline reads the counters just before the disruption.
func (r *run) baseline(ctx context.Context) baseline {
	var b baseline
	b.ext, b.extErr = tcpExt(r.cfg.NetNS)
	b.info, b.infoErr = r.adm.stats(ctx, 5*time.Second)
	b.cpu, b.cpuErr = r.adm.cpuSeconds(ctx, 5*time.Second)
	if r.kd != nil {
		r.kd.sample()
	}
	b.dials, b.fails, b.cmds = r.rec.dials.Load(), r.rec.dialFails.Load(), r.rec.failedCmds.Load()
	// The timeline starts here too, not at t0: clients can react before
	// the lab marks t0 (GLIDE reconnects on EOF while the CLIENT KILL is
	// still running), and their dials belong in the chart and the peak.
	b.at = time.Now()
	return b
}

// disrupt starts the scenario and returns t0 and a function that waits
// for the disruption to end and returns its error. A scenario that fails
// before marking t0 fails the run at once.
func (r *run) disrupt(ctx context.Context) (time.Time, func() error, error) {
	marked := make(chan time.Time, 1)
	var once sync.Once
	var byScenario atomic.Bool
	mark := func() { once.Do(func() { marked <- r.rec.disrupted() }) }
	early := make(chan error, 1)
	errc := make(chan error, 1)
	go func() {
		err := r.scenario.disrupt(ctx, r, func() { byScenario.Store(true); mark() })
		if err != nil && !byScenario.Load() {
			early <- err
			return
		}
		mark()
		errc <- err
	}()
	var t0 time.Time
	select {
	case t0 = <-marked:
	case err := <-early:
		return time.Time{}, nil, err
	}
	var err error
	waited := false
	wait := func() error {
		if !waited {
			err, waited = <-errc, true
		}
		return err
	}
	// Every path out of the run waits for the scenario (a blip's rule
	// must be removed before the namespace goes).
	r.onClose(func() { _ = wait() })
	return t0, wait, nil
}

// observe waits until every client recovered (plus Settle) or Duration
// after t0, and returns when it stopped.
func (r *run) observe(ctx context.Context, t0 time.Time) (time.Time, error) {
	cfg := r.cfg
	churn := r.scenario.traits().churn
	end := t0.Add(cfg.Duration)
	var allAt time.Time
	lastTick, lastDials := time.Now(), r.rec.dials.Load()
	for time.Now().Before(end) {
		if !churn && allAt.IsZero() && r.rec.recovered.Load() >= int64(cfg.Clients) {
			allAt = time.Now()
			if e := allAt.Add(cfg.Settle); e.Before(end) {
				end = e
			}
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return time.Time{}, ctx.Err()
		}
		if time.Since(lastTick) >= time.Second {
			d := r.rec.dials.Load()
			r.progress("+%.1fs recovered %d/%d, dials %.0f/s", time.Since(t0).Seconds(), r.rec.recovered.Load(), cfg.Clients, float64(d-lastDials)/time.Since(lastTick).Seconds())
			lastTick, lastDials = time.Now(), d
		}
	}
	return time.Now(), nil
}

// measure fills the result from the recorder and the counters.
func (r *run) measure(ctx context.Context, base baseline, started, t0, tEnd time.Time, dials, fails, cmds int64) {
	cfg, res := r.cfg, r.res
	res.ConnectsSource = ConnectsFromHook
	if r.kd != nil {
		ns := cfg.NetNS
		if len(r.hostNetNS) > 0 {
			ns = strings.Join(r.hostNetNS, ", ")
		}
		res.ConnectsSource = ConnectsFromKernel + " (netns " + ns + ")"
		if len(r.hostNetNS) == 0 && cfg.Scenario == "failover" {
			// The replica or the cluster nodes share the namespace:
			// their reconnects to the killed primary (replication,
			// the cluster bus: ~50/s from five nodes) are counted too.
			res.ConnectsSource += connectsFromKernelFailover
		}
		if err := r.kd.failure(); err != nil {
			res.Errors["connect_attempts"] = err.Error()
		}
	}
	res.ConnectAttempts, res.ConnectFailures, res.FailedCommands = dials, fails, cmds
	res.DurationMS = tEnd.Sub(t0).Milliseconds()
	if s := tEnd.Sub(t0).Seconds(); s > 0 {
		res.ConnectsPerSec = float64(res.ConnectAttempts) / s
	}
	res.Timeline = r.rec.timelineFrom(r.rec.since(base.at), r.rec.since(tEnd))
	res.PeakConnectsPerSec, res.PeakConnects1s = peakRates(res.Timeline)
	// The goodput timeline starts a second before the disruption started
	// (a kill of thousands of clients may take a while to be answered,
	// and clients react before t0 is marked) and ends with the last whole
	// bucket.
	t0ns, startNS := r.rec.since(t0), r.rec.since(started)
	res.TimelinePoints = r.rec.points(max(min(startNS, t0ns)-int64(time.Second)-int64(Bucket), 1), r.rec.since(tEnd)-int64(Bucket), t0ns)
	g := goodputOf(res.TimelinePoints, time.Second, min(startNS-t0ns, 0)/int64(time.Millisecond))
	res.GoodputBefore, res.GoodputMinRatio, res.GoodputEndRatio, res.GoodputBackMS = g.before, g.minRatio, g.endRatio, g.back80
	res.DisruptMS = t0.Sub(started).Milliseconds()
	res.PingRTTP50MS, res.PingRTTP99MS = r.rec.rtt.quantile(0.5), r.rec.rtt.quantile(0.99)
	times := recoveredWithin(r.rec.recoveryTimes(), tEnd.Sub(t0))
	res.RecoveredClients = len(times)
	if !r.scenario.traits().churn {
		if ttr, ok := timeToRecover(times, cfg.Clients, RecoverQuantile); ok {
			ms := max(ttr.Milliseconds(), 1)
			res.TimeToRecoverMS, res.Recovered = &ms, true
		}
		if len(times) > 0 {
			p50, mx := quantile(times, 0.5).Milliseconds(), quantile(times, 1).Milliseconds()
			res.RecoverP50MS, res.RecoverMaxMS = &p50, &mx
		}
	}
	r.measureCounters(ctx, base)
	if len(res.Errors) == 0 {
		res.Errors = nil
	}
	r.progress("done: %d dials, recovered %d/%d", res.ConnectAttempts, res.RecoveredClients, cfg.Clients)
}

// measureCounters fills the kernel's and Valkey's counter deltas.
func (r *run) measureCounters(ctx context.Context, base baseline) {
	res := r.res
	res.ListenOverflowsSource = "netns " + r.cfg.NetNS
	if r.cfg.NetNS == "" {
		res.ListenOverflowsSource = "current netns (the target must be local for this to mean anything)"
	}
	extErr := base.extErr
	if extErr == nil {
		ext1, err := tcpExt(r.cfg.NetNS)
		if err == nil {
			res.ListenOverflows = delta(base.ext, ext1, "ListenOverflows")
			res.ListenDrops = delta(base.ext, ext1, "ListenDrops")
		} else {
			extErr = err
		}
	}
	if extErr != nil {
		res.Errors["listen_overflows"] = extErr.Error()
	}
	infoErr := base.infoErr
	if infoErr == nil {
		info1, err := r.adm.stats(ctx, 10*time.Second)
		if err == nil {
			restarted := r.scenario.traits().restarts
			res.RejectedConnections = counterDelta(base.info, info1, "rejected_connections", &res.ValkeyCountersReset, restarted)
			res.ConnectionsReceived = counterDelta(base.info, info1, "total_connections_received", &res.ValkeyCountersReset, restarted)
		} else {
			infoErr = err
		}
	}
	if infoErr != nil {
		res.Errors["valkey"] = infoErr.Error()
	}
	cpuErr := base.cpuErr
	if cpuErr == nil {
		cpu1, err := r.adm.cpuSeconds(ctx, 10*time.Second)
		if err == nil {
			used := cpu1 - base.cpu
			if r.scenario.traits().restarts || used < 0 {
				used = cpu1 // the counter started again with the server
			}
			pct := used / time.Since(base.at).Seconds() * 100
			res.ServerCPUPercent = &pct
		} else {
			cpuErr = err
		}
	}
	if cpuErr != nil {
		res.Errors["server_cpu_percent"] = cpuErr.Error()
	}
}

func delta(a, b map[string]uint64, k string) *uint64 {
	va, oka := a[k]
	vb, okb := b[k]
	if !oka || !okb {
		return nil
	}
	d := vb - va
	if vb < va {
		d = 0
	}
	return &d
}

// counterDelta is b−a for a Valkey counter; after a restart the counter
// started again from zero, so the delta is b itself.
func counterDelta(a, b map[string]uint64, k string, reset *bool, restarted bool) *uint64 {
	vb, ok := b[k]
	if !ok {
		return nil
	}
	if restarted {
		*reset = true
		return &vb
	}
	va := a[k]
	if vb < va {
		*reset = true
		return &vb
	}
	d := vb - va
	return &d
}

func portOf(hostport string) (int, error) {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0, bad("Target", "{Target} %q: %v", hostport, err)
	}
	return strconv.Atoi(p)
}
