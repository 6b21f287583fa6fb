package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/discover"
	"github.com/stormguard/stormguard/internal/journal"
	"github.com/stormguard/stormguard/internal/notify"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
)

// Options configure the agent.
type Options struct {
	// Targets are explicit targets; empty means discover local servers.
	Targets []source.Target
	// Interval between samples (500ms).
	Interval time.Duration
	// NoEBPF turns the eBPF source off (--ebpf=false).
	NoEBPF bool
	// FastInterval is the interval while a target is not calm, and the
	// shortest spacing when the accept-queue poller asks for an early
	// sample (100ms, or Interval if that is shorter).
	FastInterval time.Duration
	// DiscoverEvery is how often discovery rescans (5s).
	DiscoverEvery time.Duration
	// Password applies to discovered targets (from --password-file or
	// VALKEY_PASSWORD); explicit addresses carry their own.
	Password string
	User     string
	// Version is sent to Valkey with CLIENT SETINFO lib-ver.
	Version  string
	Detector detect.Config
	Hub      *serve.Hub
	Journal  *journal.Journal
	Notifier *notify.Notifier
	Logger   *slog.Logger
	// AutoDefuse, when set, arms mitigations on storm and reverts on calm.
	AutoDefuse *AutoDefuse
	// OnSample, when set, is called after each sample is processed (tests).
	OnSample func(*sample.Sample, detect.State)
}

// Agent is a running watch.
type Agent struct {
	o       Options
	mu      sync.Mutex
	runners map[string]*runner
	last    map[string]time.Time
	// scanner rescans every DiscoverEvery; its memo spares a rescan the
	// per-descriptor walk of a server with many clients.
	scanner discover.Scanner
	// defuseMu guards stopping and the Add side of defuseWork: once Run
	// stops, no new arming starts, and the ones under way are waited for
	// before auto mode's mitigations are reverted (an arming that raced
	// the stop used to be applied after the revert and left behind).
	defuseMu   sync.Mutex
	stopping   bool
	defuseWork sync.WaitGroup
}

type runner struct {
	auto   *autoState
	target source.Target
	cancel context.CancelFunc
	done   chan struct{}
	// others is discovery's count of the namespace's other listeners
	// (-1: unknown, an explicit target).
	others atomic.Int64
}

// New validates options and returns an agent.
func New(o Options) (*Agent, error) {
	if o.Interval <= 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.FastInterval <= 0 {
		o.FastInterval = 100 * time.Millisecond
	}
	if o.FastInterval > o.Interval {
		o.FastInterval = o.Interval
	}
	if o.DiscoverEvery <= 0 {
		o.DiscoverEvery = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Hub == nil {
		return nil, errors.New("agent: no hub")
	}
	if o.AutoDefuse != nil {
		if err := o.AutoDefuse.normalize(); err != nil {
			return nil, err
		}
	}
	if err := o.Detector.Validate(); err != nil {
		return nil, fmt.Errorf("detector config: %w", err)
	}
	return &Agent{o: o, runners: map[string]*runner{}, last: map[string]time.Time{}, scanner: discover.Scanner{Memo: &discover.Memo{}}}, nil
}

// Run samples until ctx is done, then stops every target and returns.
func (a *Agent) Run(ctx context.Context) error {
	if len(a.o.Targets) > 0 {
		for _, t := range a.o.Targets {
			a.start(ctx, key(t), t, "")
		}
		<-ctx.Done()
	} else {
		a.discoverLoop(ctx)
	}
	if a.o.AutoDefuse != nil {
		a.defuseMu.Lock()
		a.stopping = true
		a.defuseMu.Unlock()
		a.defuseWork.Wait()
		// Take back what auto mode armed; the kernel would expire it
		// anyway, but a clean stop leaves nothing behind.
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		a.disarmAll(dctx)
		cancel()
	}
	a.stopAll()
	return nil
}

// Rescan triggers discovery now (SIGHUP).
func (a *Agent) Rescan(ctx context.Context) {
	if len(a.o.Targets) == 0 {
		a.discoverOnce(ctx)
	}
}

// Healthy reports an error when a target has not produced a sample for
// three intervals (the sampler is stuck), or there is nothing to watch.
func (a *Agent) Healthy() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.runners) == 0 {
		return errors.New("no targets: no Valkey server given or discovered")
	}
	for k := range a.runners {
		if t, ok := a.last[k]; ok && time.Since(t) > 3*a.o.Interval+time.Second {
			return fmt.Errorf("target %s: no sample for %s", k, time.Since(t).Round(time.Millisecond))
		}
	}
	return nil
}

// Targets lists the targets being watched.
func (a *Agent) Targets() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.runners))
	for _, r := range a.runners {
		out = append(out, r.target.Name())
	}
	sort.Strings(out)
	return out
}

func key(t source.Target) string { return t.NetNS + "|" + t.Name() }

func (a *Agent) discoverLoop(ctx context.Context) {
	a.discoverOnce(ctx)
	tick := time.NewTicker(a.o.DiscoverEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			a.discoverOnce(ctx)
		}
	}
}

func (a *Agent) discoverOnce(ctx context.Context) {
	servers, err := a.scanner.Scan()
	if err != nil {
		a.o.Logger.Warn("discovery failed", "err", err)
		return
	}
	seen := map[string]bool{}
	for _, s := range servers {
		for _, hp := range s.Addrs {
			ad, err := addr.Parse(hp)
			if err != nil {
				continue
			}
			ad.User, ad.Password = a.o.User, a.o.Password
			t := source.Target{Addr: ad, NetNS: s.NetNS}
			if n := s.Name(hp); n != hp {
				t.Label = n
			}
			// Namespaces are keyed by inode: /proc/PID/ns/net changes with
			// the PID, the namespace does not.
			k := fmt.Sprintf("%d|%s", s.NetNSInode, hp)
			seen[k] = true
			a.start(ctx, k, t, fmt.Sprintf("discovered %s pid %d", s.Comm, s.PID))
			a.mu.Lock()
			if r := a.runners[k]; r != nil {
				r.others.Store(int64(s.OtherListeners))
			}
			a.mu.Unlock()
		}
	}
	a.mu.Lock()
	var gone []*runner
	for k, r := range a.runners {
		if !seen[k] {
			gone = append(gone, r)
			delete(a.runners, k)
			delete(a.last, k)
		}
	}
	a.mu.Unlock()
	for _, r := range gone {
		r.cancel()
		<-r.done
		a.o.Hub.Remove(r.target.Name())
		a.event(ctx, TargetEvent{Time: time.Now(), Type: "target", Target: r.target.Name(), Action: "removed", Reason: "server no longer running"})
	}
}

func (a *Agent) start(ctx context.Context, k string, t source.Target, why string) {
	a.mu.Lock()
	if _, ok := a.runners[k]; ok {
		a.mu.Unlock()
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	r := &runner{target: t, cancel: cancel, done: make(chan struct{}), auto: &autoState{}}
	r.others.Store(-1)
	a.runners[k] = r
	a.mu.Unlock()
	if why != "" {
		netns := t.NetNS
		a.event(ctx, TargetEvent{Time: time.Now(), Type: "target", Target: t.Name(), Action: "added", Reason: why, NetNS: &netns})
	}
	a.o.Logger.Info("watching target", "target", t.Name(), "addr", t.Addr.String(), "netns", t.NetNS)
	go func() {
		defer close(r.done)
		a.runTarget(rctx, k, t, r)
	}()
}

func (a *Agent) stopAll() {
	a.mu.Lock()
	rs := make([]*runner, 0, len(a.runners))
	for _, r := range a.runners {
		rs = append(rs, r)
	}
	a.mu.Unlock()
	for _, r := range rs {
		r.cancel()
		<-r.done
	}
}

// runTarget samples one target until ctx is done, passing each sample
// through its pipeline.
func (a *Agent) runTarget(ctx context.Context, k string, t source.Target, r *runner) {
	set := source.Open(ctx, source.Options{Target: t, Interval: a.o.Interval, Logger: a.o.Logger, Version: a.o.Version, NoEBPF: a.o.NoEBPF})
	defer set.Close()
	cfg := a.o.Detector
	cfg.Target = t.Name()
	p := &pipeline{r: r, set: set, det: detect.New(cfg),
		attr:  newAttributor(set, a.o.Interval, a.o.Logger.With("target", t.Name())),
		sinks: a.sinks(k, r)}
	// Before set.Close (deferred above): a running dump ends first.
	defer p.attr.close()
	sm := &sample.Sampler{Target: t.Name(), Port: t.Port(), NetNS: t.NetNS, Sources: set.Sources,
		Interval: a.o.Interval, FastInterval: a.o.FastInterval, Fast: p.fast.Load, Wakes: set.Wakes}
	sm.Run(ctx, func(s *sample.Sample) { p.step(ctx, s) })
}

// event records a non-state event (targets added or removed, defuse
// actions, the onset checklist).
func (a *Agent) event(ctx context.Context, ev event) {
	// The map-based events logged a missing action as <nil>; keep that.
	var action any
	if act := ev.eventAction(); act != "" || ev.eventType() != "checklist" {
		action = act
	}
	a.o.Logger.Info("agent event", "type", ev.eventType(), "target", ev.eventTarget(), "action", action)
	a.o.Hub.PublishEvent(ev)
	if a.o.Journal != nil {
		a.o.Journal.Event(ev.eventTarget(), ev.eventTime(), "", ev)
	}
}
