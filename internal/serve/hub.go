package serve

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

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
	// Attribution is who the target is and who connects to it, learnt by
	// the agent beside the sample (attribution.go).
	Attribution
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
	subs      map[chan []byte]struct{}
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
		subs: map[chan []byte]struct{}{}, sources: sources, started: time.Now(),
	}
}

// Publish records a target's latest sample, state and detector detail.
func (h *Hub) Publish(s *sample.Sample, st State, role string, detail any) {
	var raw json.RawMessage
	if detail != nil {
		raw, _ = json.Marshal(detail)
	}
	h.mu.Lock()
	e := h.targets[s.Target]
	if e == nil {
		e = &targetEntry{recent: make([]*sample.Sample, 0, h.maxRecent)}
		h.targets[s.Target] = e
	}
	e.view = TargetView{Target: s.Target, State: st, Role: role, Sample: s, Detail: raw, Attribution: e.view.Attribution}
	if len(e.recent) < h.maxRecent {
		e.recent = append(e.recent, s)
	} else {
		e.recent[e.next] = s
		e.next = (e.next + 1) % h.maxRecent
	}
	e.samples++
	msg := sseMessage("sample", e.view)
	h.broadcastLocked(msg)
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
		out = append(out, e.view)
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

// subscribe returns a channel of SSE messages; slow readers miss messages
// rather than slow the agent.
func (h *Hub) subscribe() chan []byte {
	c := make(chan []byte, 64)
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c
}

func (h *Hub) unsubscribe(c chan []byte) {
	h.mu.Lock()
	delete(h.subs, c)
	h.mu.Unlock()
}

func (h *Hub) broadcastLocked(msg []byte) {
	for c := range h.subs {
		select {
		case c <- msg:
		default:
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
