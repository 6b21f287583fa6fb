package serve

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/sample"
)

// State is a target's detector state as the hub shows it.
type State struct {
	Name    string    `json:"state"`
	Code    int       `json:"state_code"`
	Since   time.Time `json:"since"`
	Verdict string    `json:"verdict,omitempty"`
}

// TargetView is what /api/v1/state reports per target.
type TargetView struct {
	Target string `json:"target"`
	State
	Role   string         `json:"role,omitempty"`
	Sample *sample.Sample `json:"sample,omitempty"`
	// Detail is the detector's derived view (rates, forecasts), as JSON.
	Detail json.RawMessage `json:"detail,omitempty"`
	// View is the same view, typed, for in-process readers (top reads it
	// from the hub without decoding Detail). It is not serialised; a
	// remote reader decodes Detail. Never modified after publication.
	View *detect.View `json:"-"`
	// Attribution is who the target is and who connects to it, learnt by
	// the agent beside the sample (attribution.go).
	Attribution
}

// withDetail returns v with Detail encoded from View.
func (v TargetView) withDetail() TargetView {
	if v.Detail == nil && v.View != nil {
		v.Detail, _ = json.Marshal(v.View)
	}
	return v
}

type targetEntry struct {
	view    TargetView
	recent  []*sample.Sample // ring, oldest first after rotation
	next    int
	samples uint64
}

// Hub holds the latest view of every target, recent samples and events, and
// fans updates out to stream subscribers. Its zero value is not usable; use
// NewHub.
type Hub struct {
	mu        sync.RWMutex
	targets   map[string]*targetEntry
	events    []json.RawMessage
	maxEv     int
	maxRecent int
	subs      map[*subscriber]struct{}
	sources   []string
	started   time.Time
}

// NewHub returns a hub keeping recent samples per target and recent events.
// sources lists every signal source name, for stormguard_source_up.
func NewHub(sources []string, recentSamples, recentEvents int) *Hub {
	if recentSamples <= 0 {
		recentSamples = 600
	}
	if recentEvents <= 0 {
		recentEvents = 1000
	}
	return &Hub{
		targets: map[string]*targetEntry{}, maxEv: recentEvents, maxRecent: recentSamples,
		subs: map[*subscriber]struct{}{}, sources: sources, started: time.Now(),
	}
}

// Publish records a target's latest sample, state and detector view
// (nil: none).
func (h *Hub) Publish(s *sample.Sample, st State, role string, view *detect.View) {
	// Detail is encoded when read (Views, streams), not per sample: at a
	// 10 ms interval that is 100 encodings a second nobody reads.
	var typed *detect.View
	if view != nil {
		v := *view
		typed = &v
	}
	h.mu.Lock()
	e := h.targets[s.Target]
	if e == nil {
		e = &targetEntry{recent: make([]*sample.Sample, 0, h.maxRecent)}
		h.targets[s.Target] = e
	}
	e.view = TargetView{Target: s.Target, State: st, Role: role, Sample: s, View: typed, Attribution: e.view.Attribution}
	if len(e.recent) < h.maxRecent {
		e.recent = append(e.recent, s)
	} else {
		e.recent[e.next] = s
		e.next = (e.next + 1) % h.maxRecent
	}
	e.samples++
	// Encoding the whole view is most of a publish's cost: only for
	// streams that are listening (at a 10 ms interval that is 100
	// encodings a second nobody reads).
	if len(h.subs) > 0 {
		h.broadcastLocked(sseMessage("sample", e.view.withDetail()))
	}
	h.mu.Unlock()
}

// Remove forgets a target (it went away).
func (h *Hub) Remove(target string) {
	h.mu.Lock()
	delete(h.targets, target)
	h.mu.Unlock()
}

// PublishEvent records an event (any JSON-encodable value) and streams it.
func (h *Hub) PublishEvent(ev any) {
	raw, err := json.Marshal(ev)
	if err != nil {
		return
	}
	h.mu.Lock()
	if len(h.events) >= h.maxEv {
		copy(h.events, h.events[1:])
		h.events = h.events[:len(h.events)-1]
	}
	h.events = append(h.events, raw)
	h.broadcastLocked(sseRaw("event", raw))
	h.mu.Unlock()
}

// Views returns every target's latest view, sorted by target.
func (h *Hub) Views() []TargetView {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]TargetView, 0, len(h.targets))
	for _, e := range h.targets {
		out = append(out, e.view.withDetail())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out
}

// Samples returns a target's recent samples after since, oldest first.
func (h *Hub) Samples(target string, since time.Time) []*sample.Sample {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []*sample.Sample
	for name, e := range h.targets {
		if target != "" && name != target {
			continue
		}
		n := len(e.recent)
		for i := 0; i < n; i++ {
			s := e.recent[(e.next+i)%n]
			if s.Time.After(since) {
				out = append(out, s)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// Events returns recent events, oldest first.
func (h *Hub) Events() []json.RawMessage {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return append([]json.RawMessage(nil), h.events...)
}

// subscriberBuffer is how many messages a stream subscriber may have
// waiting. A reader that lets more pile up is dropped (it can reconnect and
// starts again from the current state), so what a slow or stuck client
// costs the agent is bounded: this many shared messages and its connection.
const subscriberBuffer = 16

// subscriber is one stream client.
type subscriber struct {
	c chan []byte
	// gone is closed when the hub drops the subscriber for falling behind.
	gone chan struct{}
}

// subscribe returns a new stream subscriber.
func (h *Hub) subscribe() *subscriber {
	s := &subscriber{c: make(chan []byte, subscriberBuffer), gone: make(chan struct{})}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// broadcastLocked queues msg for every subscriber without ever blocking;
// a subscriber whose buffer is full is dropped.
func (h *Hub) broadcastLocked(msg []byte) {
	for s := range h.subs {
		select {
		case s.c <- msg:
		default:
			delete(h.subs, s)
			close(s.gone)
		}
	}
}

func sseMessage(event string, v any) []byte {
	raw, _ := json.Marshal(v)
	return sseRaw(event, raw)
}

func sseRaw(event string, raw []byte) []byte {
	b := make([]byte, 0, len(raw)+len(event)+16)
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, raw...)
	b = append(b, "\n\n"...)
	return b
}
