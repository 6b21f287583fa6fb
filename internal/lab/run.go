package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stormguard/stormguard/dialer"
)

// ErrUnreachable is returned when the target does not answer the admin
// connection's PING before the run starts.
var ErrUnreachable = errors.New("cannot reach Valkey")

// run is one storm in progress.
type run struct {
	cfg     Config
	dialer  *sourceDialer
	sources int // source addresses the instances are spread over (≤1: the kernel's choice)
	rec     *recorder
	// adminDials counts the admin connection's dials, which the kernel
	// counters (valkey-glide) see and the lab subtracts.
	adminDials atomic.Int64
}

// adminDial is the admin connection's dial: never a client's. It comes
// from the kernel's choice of source address.
func (r *run) adminDial(ctx context.Context, network, addr string) (net.Conn, error) {
	r.adminDials.Add(1)
	return r.dialer.from(netip.Addr{})(ctx, network, addr)
}

// countedDial returns the DialFunc of one instance: its connections come
// from the instance's source address, and every dial is counted.
func (r *run) countedDial(instance int) DialFunc {
	var src netip.Addr
	if r.sources > 1 {
		src = sourceAddr(instance % r.sources)
	}
	base := r.dialer.from(src)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		r.rec.dial()
		c, err := base(ctx, network, addr)
		if err != nil {
			r.rec.dialFailed(err)
		}
		return c, err
	}
}

// timedDial bounds an instance's countedDial by the lab strategies'
// connect timeout.
func (r *run) timedDial(instance int) DialFunc {
	return withTimeout(r.countedDial(instance), r.cfg.ConnectTimeout)
}

func (r *run) progress(format string, a ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "storm %s/%s: "+format+"\n", append([]any{r.cfg.Strategy, r.cfg.Scenario}, a...)...)
	}
}

// FDsNeeded estimates the file descriptors a run with cfg holds at once.
func FDsNeeded(cfg Config) int {
	cfg = cfg.withDefaults()
	per := 1
	if cfg.Strategy == "pool-unbounded" {
		per = cfg.PoolSize
	}
	// The lab's own strategies hold one socket per client (the old one
	// is closed before a redial); the libraries keep a few per instance.
	inst := 0
	switch cfg.Strategy {
	case GLIDEStrategy:
		inst = glideFDsPerClient
	case "go-redis", "valkey-go":
		inst = 2
	}
	return cfg.Clients*per + inst*cfg.Instances + 256 + prefetch
}

// Run replays one storm and measures it. ctx cancellation stops it early
// (an error).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pol, _ := cfg.policy()
	sources, err := sourceCount(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sd, err := newSourceDialer(cfg.NetNS)
	if err != nil {
		return nil, err
	}
	defer sd.close()
	horizon := cfg.WarmupTimeout + cfg.Hold + cfg.Duration + cfg.Settle + cfg.Blip + time.Minute
	r := &run{cfg: cfg, dialer: sd, sources: sources, rec: newRecorder(cfg.Clients, horizon)}
	res := &Result{Strategy: cfg.Strategy, Scenario: cfg.Scenario, Clients: cfg.Clients,
		Instances: cfg.Instances, SourceAddrs: max(sources, 1), Target: cfg.Target, Errors: map[string]string{}}

	adm := &admin{dial: r.adminDial, addr: cfg.Target, user: cfg.User, pass: cfg.Password}
	defer adm.close()
	if _, err := adm.do(ctx, "PING"); err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, cfg.Target, err)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	// valkey-glide dials from its Rust core: count its connects in the
	// kernel (see kernelDials), from before its first client on.
	var kd *kernelDials
	if cfg.Strategy == GLIDEStrategy {
		snmp, err := openTCPSNMP(cfg.NetNS)
		if err != nil {
			return nil, err
		}
		defer snmp.close()
		if kd, err = newKernelDials(snmp, r.rec, r.adminDials.Load); err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			kd.run(cctx)
		}()
	}
	var libs []pinger
	var libMu sync.Mutex
	launchErr := make(chan error, 1)
	defer func() {
		cancel()
		wg.Wait()
		for _, p := range libs {
			p.close()
		}
	}()

	// Launch: instance k owns clients [k·N/K, (k+1)·N/K); clients start
	// at cfg.Ramp per second.
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		id := 0
		for k := 0; k < cfg.Instances && cctx.Err() == nil; k++ {
			hi := (k + 1) * cfg.Clients / cfg.Instances
			dial := r.timedDial(k)
			var p pinger
			var observe func(*rawConn)
			switch cfg.Strategy {
			case "stormguard":
				// The same connect timeout as every lab strategy (the
				// dialer's own default is 5s).
				d, err := dialer.New(dialer.Options{Dial: r.countedDial(k), DialTimeout: cfg.ConnectTimeout})
				if err != nil {
					launchErr <- fmt.Errorf("stormguard dialer: %w", err)
					return
				}
				dial = d.DialContext
				observe = observer(d, cfg.Target, cfg.CommandTimeout)
			case "go-redis":
				p, _ = r.newGoRedis(r.countedDial(k))
			case "valkey-go":
				var err error
				if p, err = r.newValkeyGo(cctx, r.countedDial(k)); err != nil {
					launchErr <- fmt.Errorf("valkey-go client: %w", err)
					return
				}
			case GLIDEStrategy:
				var err error
				if p, err = r.newValkeyGlide(cctx); err != nil {
					launchErr <- fmt.Errorf("valkey-glide client: %w", err)
					return
				}
			}
			if p != nil {
				libMu.Lock()
				libs = append(libs, p)
				libMu.Unlock()
			}
			for ; id < hi; id++ {
				if cfg.Ramp > 0 {
					at := start.Add(time.Duration(float64(id) / cfg.Ramp * float64(time.Second)))
					if !sleepCtx(cctx, time.Until(at)) {
						return
					}
				}
				wg.Add(1)
				go func(id int) {
					defer wg.Done()
					switch {
					case p != nil:
						r.libClient(cctx, id, p)
					case cfg.Strategy == "pool-unbounded":
						r.poolClient(cctx, id, dial)
					default:
						r.rawClient(cctx, id, pol, dial, cfg.Strategy == "stormguard", observe)
					}
				}(id)
			}
		}
	}()

	// Warm-up: every client must have completed a PING.
	r.progress("warm-up: starting %d clients in %d instances from %d source addresses at %g/s", cfg.Clients, cfg.Instances, res.SourceAddrs, cfg.Ramp)
	warmDeadline := time.Now().Add(cfg.WarmupTimeout)
	lastTick := time.Now()
	for r.rec.warmCount.Load() < int64(cfg.Clients) {
		if time.Now().After(warmDeadline) {
			return nil, fmt.Errorf("warm-up: only %d of %d clients completed a PING within %s (last error: %s)",
				r.rec.warmCount.Load(), cfg.Clients, cfg.WarmupTimeout, r.rec.lastError())
		}
		select {
		case err := <-launchErr:
			return nil, err
		default:
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return nil, ctx.Err()
		}
		if time.Since(lastTick) >= time.Second {
			lastTick = time.Now()
			r.progress("warm-up: %d/%d clients up", r.rec.warmCount.Load(), cfg.Clients)
		}
	}
	if kd != nil {
		kd.sample()
	}
	res.WarmupConnectAttempts = r.rec.dials.Load()
	if cfg.Scenario != "churn" {
		r.progress("all %d clients up; holding %s", cfg.Clients, cfg.Hold)
		if !sleepCtx(ctx, cfg.Hold) {
			return nil, ctx.Err()
		}
	}

	// Baselines just before the disruption.
	ext0, extErr := tcpExt(cfg.NetNS)
	info0, infoErr := adm.stats(ctx, 5*time.Second)
	if kd != nil {
		kd.sample()
	}
	dials0, fails0, cmds0 := r.rec.dials.Load(), r.rec.dialFails.Load(), r.rec.failedCmds.Load()
	// The timeline starts here too, not at t0: clients can react before
	// the lab marks t0 (GLIDE reconnects on EOF while the CLIENT KILL is
	// still running), and their dials belong in the chart and the peak.
	tBase := time.Now()

	disrupted := make(chan time.Time, 1)
	disruptErr := make(chan error, 1)
	done := make(chan struct{})
	var restarted bool
	switch cfg.Scenario {
	case "kill":
		n, err := adm.killNormal(ctx)
		if err != nil {
			return nil, err
		}
		res.KilledClients = &n
		disrupted <- r.rec.disrupted()
		close(done)
		disruptErr <- nil
	case "churn":
		disrupted <- r.rec.disrupted()
		close(done)
		disruptErr <- nil
	case "restart":
		restarted = true
		go func() {
			defer close(done)
			var once sync.Once
			err := cfg.Restart(ctx, func() { once.Do(func() { disrupted <- r.rec.disrupted() }) })
			once.Do(func() { disrupted <- r.rec.disrupted() })
			disruptErr <- err
		}()
	case "blip":
		port, err := portOf(cfg.Target)
		if err != nil {
			return nil, err
		}
		remove, err := blackhole(ctx, cfg.NetNS, port)
		if err != nil {
			return nil, err
		}
		disrupted <- r.rec.disrupted()
		go func() {
			defer close(done)
			sleepCtx(ctx, cfg.Blip)
			disruptErr <- remove()
		}()
		defer func() { <-done }()
	}
	t0 := <-disrupted
	r.progress("disrupted (%s)", cfg.Scenario)

	// Observe until every client recovered (plus Settle) or Duration.
	end := t0.Add(cfg.Duration)
	var allAt time.Time
	lastTick, lastDials := time.Now(), r.rec.dials.Load()
	for time.Now().Before(end) {
		if cfg.Scenario != "churn" && r.rec.recovered.Load() >= int64(cfg.Clients) {
			if allAt.IsZero() {
				allAt = time.Now()
				if e := allAt.Add(cfg.Settle); e.Before(end) {
					end = e
				}
			}
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return nil, ctx.Err()
		}
		if time.Since(lastTick) >= time.Second {
			d := r.rec.dials.Load()
			r.progress("+%.1fs recovered %d/%d, dials %.0f/s", time.Since(t0).Seconds(), r.rec.recovered.Load(), cfg.Clients, float64(d-lastDials)/time.Since(lastTick).Seconds())
			lastTick, lastDials = time.Now(), d
		}
	}
	tEnd := time.Now()
	if kd != nil {
		kd.sample()
	}
	<-done
	if err := <-disruptErr; err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Scenario, err)
	}
	dials1, fails1, cmds1 := r.rec.dials.Load(), r.rec.dialFails.Load(), r.rec.failedCmds.Load()
	cancel()

	// Measurements.
	res.ConnectsSource = ConnectsFromHook
	if kd != nil {
		res.ConnectsSource = ConnectsFromKernel + " (netns " + cfg.NetNS + ")"
		if err := kd.failure(); err != nil {
			res.Errors["connect_attempts"] = err.Error()
		}
	}
	res.ConnectAttempts = dials1 - dials0
	res.ConnectFailures = fails1 - fails0
	res.FailedCommands = cmds1 - cmds0
	res.DurationMS = tEnd.Sub(t0).Milliseconds()
	if s := tEnd.Sub(t0).Seconds(); s > 0 {
		res.ConnectsPerSec = float64(res.ConnectAttempts) / s
	}
	res.Timeline = r.rec.timelineFrom(r.rec.since(tBase), r.rec.since(tEnd))
	res.PeakConnectsPerSec, res.PeakConnects1s = peakRates(res.Timeline)
	times := r.rec.recoveryTimes()
	res.RecoveredClients = len(times)
	if cfg.Scenario != "churn" {
		if ttr, ok := timeToRecover(times, cfg.Clients, RecoverQuantile); ok {
			ms := max(ttr.Milliseconds(), 1)
			res.TimeToRecoverMS = &ms
		}
		if len(times) > 0 {
			p50, mx := quantile(times, 0.5).Milliseconds(), quantile(times, 1).Milliseconds()
			res.RecoverP50MS, res.RecoverMaxMS = &p50, &mx
		}
	}
	res.ListenOverflowsSource = "netns " + cfg.NetNS
	if cfg.NetNS == "" {
		res.ListenOverflowsSource = "current netns (the target must be local for this to mean anything)"
	}
	if extErr == nil {
		ext1, err := tcpExt(cfg.NetNS)
		if err == nil {
			res.ListenOverflows = delta(ext0, ext1, "ListenOverflows")
			res.ListenDrops = delta(ext0, ext1, "ListenDrops")
		} else {
			extErr = err
		}
	}
	if extErr != nil {
		res.Errors["listen_overflows"] = extErr.Error()
	}
	if infoErr == nil {
		info1, err := adm.stats(ctx, 10*time.Second)
		if err == nil {
			res.RejectedConnections = counterDelta(info0, info1, "rejected_connections", &res.ValkeyCountersReset, restarted)
			res.ConnectionsReceived = counterDelta(info0, info1, "total_connections_received", &res.ValkeyCountersReset, restarted)
		} else {
			infoErr = err
		}
	}
	if infoErr != nil {
		res.Errors["valkey"] = infoErr.Error()
	}
	if len(res.Errors) == 0 {
		res.Errors = nil
	}
	r.progress("done: %d dials, recovered %d/%d", res.ConnectAttempts, res.RecoveredClients, cfg.Clients)
	return res, nil
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
		return 0, fmt.Errorf("%w: target %q: %v", ErrConfig, hostport, err)
	}
	return strconv.Atoi(p)
}
