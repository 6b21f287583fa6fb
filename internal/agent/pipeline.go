package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/journal"
	"github.com/stormguard/stormguard/internal/notify"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
)

// Update is what one sample of one target produced. Every sink gets the
// same values, in order; nothing a sink does flows back into sampling or
// detection (that feedback is Pace, decided before the sinks run).
type Update struct {
	Target source.Target
	Sample *sample.Sample
	State  detect.State
	// Since is when the current state began.
	Since time.Time
	// View is the detector's derived view of this sample.
	View detect.View
	// Role is the server's replication role as last read from INFO (""
	// until one INFO answered): one late INFO under load must not make
	// stormguard_target_info vanish from /metrics.
	Role        string
	Attribution serve.Attribution
	// Events are the state changes this sample caused (none or one),
	// with attribution added to a surge or storm.
	Events []detect.Event
	// Verdict is the last transition's verdict, kept while the state lasts.
	Verdict string
}

// Sink consumes updates. Handle must not block the sampler for long:
// slow work (webhooks, disk, nftables, the checklist) is queued or run in
// its own goroutine.
type Sink interface {
	Handle(ctx context.Context, u Update)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, u Update)

// Handle calls f.
func (f SinkFunc) Handle(ctx context.Context, u Update) { f(ctx, u) }

// Sinks fans an update out to each sink in turn.
type Sinks []Sink

// Handle passes u to every sink in order.
func (ss Sinks) Handle(ctx context.Context, u Update) {
	for _, s := range ss {
		s.Handle(ctx, u)
	}
}

// Pace is the feedback one sample gives the next, computed in one place
// (paceFor) from the detector's state and view after every sample.
type Pace struct {
	// Fast asks the sampler for the next sample after FastInterval:
	// anything unusual (a surge or storm, an accept queue at least half
	// full, or connections dropped anywhere in the namespace, which the
	// detector may not pin on this port yet) gets finer resolution.
	Fast bool
	// Heavy allows the valkey source's heavy commands (CLIENT LIST): only
	// while calm (principle 1 in docs/design.md).
	Heavy bool
}

func paceFor(st detect.State, v detect.View) Pace {
	return Pace{
		Fast:  st != detect.Calm || v.AcceptOccupancy != nil && *v.AcceptOccupancy >= 0.5 || v.DroppedRate != nil && *v.DroppedRate > 0,
		Heavy: st == detect.Calm,
	}
}

// pipeline is one target's path from sample to sinks.
type pipeline struct {
	r    *runner
	set  *source.Set
	det  *detect.Detector
	attr *attributor
	// fast is Pace.Fast for the sampler, which asks before each wait.
	fast    atomic.Bool
	verdict string
	sinks   Sink
	// role and node are the last role and cluster node ID INFO gave;
	// a sample without a Valkey reading keeps them.
	role, node string
}

// step runs one sample through detection and attribution, applies the
// pace, and hands the update to the sinks.
func (p *pipeline) step(ctx context.Context, s *sample.Sample) {
	// What only the agent knows: whether this server is its namespace's
	// only listener, and what its own mitigation dropped.
	if n := p.r.others.Load(); n >= 0 {
		s.NetNSOtherListeners = sample.Int(int(n))
	}
	s.Mitigation = p.r.auto.mitigation()
	st, events := p.det.Observe(s)
	view := p.det.View()
	pace := paceFor(st, view)
	p.fast.Store(pace.Fast)
	_, since := p.det.State()
	p.set.SetDetectorCalm(pace.Heavy)
	now := time.Now()
	p.attr.step(ctx, st, now)
	u := Update{Target: p.r.target, Sample: s, State: st, Since: since, View: view, Events: events,
		Attribution: serve.Attribution{Sources: p.attr.current(now), Clients: clientGroups(p.set.ClientGroups(), st, now)}}
	u.Role, u.Attribution.ClusterNodeID = p.identity(s)
	for i := range events {
		if events[i].To == detect.Surge || events[i].To == detect.Storm {
			if src := p.attr.fresh(now); src != nil {
				events[i].Evidence.Attribution = src
				events[i].Verdict = appendSentence(events[i].Verdict, sourcesSentence(src, u.Attribution.Clients))
			}
		}
	}
	fresh := ""
	if len(events) > 0 {
		fresh = events[len(events)-1].Verdict
	}
	u.Verdict = p.keepVerdict(st, fresh)
	p.sinks.Handle(ctx, u)
}

// identity returns the target's role and cluster node ID as INFO last gave
// them: a sample whose INFO was late or failed keeps the last ones.
func (p *pipeline) identity(s *sample.Sample) (role, node string) {
	if s.Valkey != nil && s.Valkey.Role != "" {
		p.role = source.RoleName(s.Valkey.Role)
	}
	if s.Valkey != nil && s.Valkey.ClusterNodeID != "" {
		p.node = s.Valkey.ClusterNodeID
	}
	return p.role, p.node
}

// keepVerdict keeps the last transition's verdict on display while the
// state lasts.
func (p *pipeline) keepVerdict(st detect.State, fresh string) string {
	if fresh != "" {
		p.verdict = fresh
	}
	if st == detect.Calm && fresh == "" {
		p.verdict = ""
	}
	return p.verdict
}

// The sinks. Each does one thing; the wiring in Agent.sinks puts them in
// order.

// hubSink publishes the target's view and its state events to the hub
// (/metrics, the API, SSE, the dashboard and top).
type hubSink struct{ hub *serve.Hub }

func (h hubSink) Handle(_ context.Context, u Update) {
	h.hub.SetAttribution(u.Sample.Target, u.Attribution)
	h.hub.Publish(u.Sample, serve.State{Name: u.State.String(), Code: u.State.Code(), Since: u.Since, Verdict: u.Verdict}, u.Role, &u.View)
	for _, ev := range u.Events {
		h.hub.PublishEvent(ev)
	}
}

// journalSink writes samples to the ring and events to --events and the
// capture a surge or storm opens.
type journalSink struct{ j *journal.Journal }

func (s journalSink) Handle(_ context.Context, u Update) {
	s.j.Sample(u.Sample)
	for _, ev := range u.Events {
		s.j.Event(ev.Target, ev.Time, ev.To.String(), ev)
	}
}

// logSink logs each state change at a level that matches it.
type logSink struct{ log *slog.Logger }

func (s logSink) Handle(ctx context.Context, u Update) {
	for _, ev := range u.Events {
		lvl := slog.LevelInfo
		switch ev.To {
		case detect.Storm:
			lvl = slog.LevelError
		case detect.Surge:
			lvl = slog.LevelWarn
		}
		s.log.Log(ctx, lvl, "storm state changed", "target", ev.Target, "from", ev.From.String(), "to", ev.To.String(), "verdict", ev.Verdict)
	}
}

// notifySink sends state changes to the webhook and Alertmanager.
type notifySink struct{ n *notify.Notifier }

func (s notifySink) Handle(_ context.Context, u Update) {
	for _, ev := range u.Events {
		if ev.Type != "state" {
			continue
		}
		raw, _ := json.Marshal(ev)
		s.n.Notify(notify.Alert{Time: ev.Time, Target: ev.Target, From: ev.From.String(), To: ev.To.String(), Verdict: ev.Verdict, Event: raw})
	}
}

// sinks wires one target's sinks, in the order they see each update.
func (a *Agent) sinks(k string, r *runner) Sinks {
	ss := Sinks{logSink{a.o.Logger}, hubSink{a.o.Hub}}
	if a.o.Journal != nil {
		ss = append(ss, journalSink{a.o.Journal})
	}
	if a.o.Notifier != nil {
		ss = append(ss, notifySink{a.o.Notifier})
	}
	// The onset audit: the kernel checklist when calm turns to surge or
	// storm, in its own goroutine.
	ss = append(ss, SinkFunc(func(ctx context.Context, u Update) {
		for _, ev := range u.Events {
			if ev.From == detect.Calm && (ev.To == detect.Surge || ev.To == detect.Storm) {
				go a.auditAtOnset(ctx, u.Target)
			}
		}
	}))
	if a.o.AutoDefuse != nil {
		ss = append(ss, SinkFunc(func(ctx context.Context, u Update) {
			a.autoDefuse(ctx, u.Target, r.auto, u.Sample, u.State, u.Sample.Time)
		}))
	}
	// Health: the time of the last sample, for Healthy.
	ss = append(ss, SinkFunc(func(_ context.Context, u Update) {
		a.mu.Lock()
		a.last[k] = u.Sample.Time
		a.mu.Unlock()
	}))
	if a.o.OnSample != nil {
		ss = append(ss, SinkFunc(func(_ context.Context, u Update) { a.o.OnSample(u.Sample, u.State) }))
	}
	return ss
}
