package agent_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/agent"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/serve"
)

// TestIntegrationSurgeAttribution: a pool of 40 old connections, then a
// burst of 60 new connections from 127.0.0.2, 20 from 127.0.0.3 and 10 from
// 127.0.0.4 → the surge event's evidence, /api/v1/state and /metrics name
// 127.0.0.2 with two thirds of the new connections; the pool is not blamed.
func TestIntegrationSurgeAttribution(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	sandboxtest.DialFrom(t, sb, "127.0.0.9", 40) // the calm pool, before the agent starts

	_, hub := runAgent(t, sb, 250*time.Millisecond, func(o *agent.Options) {
		// A low floor, and no client headroom counted as enough, so 90
		// connections in a second are a surge (a rate alone never is).
		// The floor is low enough that 90 dials spread over several
		// seconds by a loaded machine are still a surge.
		o.Detector = detect.Config{NewConnFloor: 15, HeadroomOccupancy: 0.000001}
	})

	// Calm first: the reference dump and a CLIENT LIST are taken.
	var view serve.TargetView
	waitView(t, hub, func(v serve.TargetView) bool {
		view = v
		return v.State.Name == "calm" && v.Clients != nil && v.Clients.Snapshot != nil && v.Clients.Clients >= 40 &&
			bytes.Contains(v.Detail, []byte(`"new_conn_baseline":`)) && !bytes.Contains(v.Detail, []byte(`"new_conn_baseline":null`))
	})
	if view.Role != "primary" {
		t.Errorf("role %q, want primary", view.Role)
	}

	sandboxtest.DialFrom(t, sb, "127.0.0.2", 60)
	sandboxtest.DialFrom(t, sb, "127.0.0.3", 20)
	sandboxtest.DialFrom(t, sb, "127.0.0.4", 10)

	if ev, ok := episodeEvent(t, hub); ok {
		checkEventSources(t, ev)
	}

	// /api/v1/state carries the sources and the labelled client groups.
	waitView(t, hub, func(v serve.TargetView) bool {
		view = v
		return v.Sources != nil && v.Sources.Total == 90 && v.State.Name != "calm"
	})
	if s := view.Sources.TopIPs[0]; s.IP != "127.0.0.2" || s.Count != 60 {
		t.Errorf("state sources top %+v, want 127.0.0.2 ×60", s)
	}
	if view.Clients == nil || !strings.Contains(view.Clients.Note, "taken while calm") {
		t.Errorf("client groups during %s: %+v", view.State.Name, view.Clients)
	}

	// /metrics: the role and the top prefix.
	srv := httptest.NewServer(serve.Handler(hub, serve.Options{}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`stormguard_target_info{cluster_node_id="",role="primary",target="` + sb.Addr() + `"} 1`,
		`stormguard_top_source_new_connections{prefix="127.0.0.0/24",target="` + sb.Addr() + `"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// episodeEvent waits for the surge or storm event and returns it, with
// ok false when it carried no sources. The attribution dump of the
// transition runs in the background and the step waits for it only a
// quarter of the interval; on a loaded machine the dump can take longer,
// and then (by design) the event goes out without sources and a later
// sample's report shows them in /api/v1/state, which the caller checks.
func episodeEvent(t *testing.T, hub *serve.Hub) (detect.Event, bool) {
	t.Helper()
	var ev detect.Event
	found := false
	var seen []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		seen = seen[:0]
		for _, raw := range hub.Events() {
			var e detect.Event
			if json.Unmarshal(raw, &e) != nil || e.Type != "state" {
				continue
			}
			seen = append(seen, e.From.String()+"→"+e.To.String()+" ("+e.Reason+")")
			if e.To != detect.Surge && e.To != detect.Storm {
				continue
			}
			if e.Evidence.Attribution != nil {
				return e, true
			}
			ev, found = e, true
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !found {
		raw, _ := json.Marshal(hub.Views())
		t.Fatalf("no surge or storm event within 20s; state events %q; views %.2000s", seen, raw)
	}
	t.Logf("the %s event carried no sources (its dump outlasted the step's wait on this loaded machine); checking the API's", ev.To)
	return ev, false
}

// checkEventSources: the event's evidence and verdict name 127.0.0.2 with
// about two thirds of the new connections, never the old pool.
func checkEventSources(t *testing.T, ev detect.Event) {
	t.Helper()
	at := ev.Evidence.Attribution
	raw, _ := json.Marshal(at)
	t.Logf("event %s→%s: %s; verdict %q; attribution %s", ev.From, ev.To, ev.Reason, ev.Verdict, raw)
	if at.Basis != "new_sockets" || len(at.TopIPs) == 0 {
		t.Fatalf("attribution: %s", raw)
	}
	// The event may fire after part of the burst: the share of the
	// heaviest source is its share of what was new at that dump.
	if top := at.TopIPs[0]; top.IP != "127.0.0.2" || top.Share < 0.5 {
		t.Errorf("heaviest source %+v, want 127.0.0.2 with about 2/3", top)
	}
	if !strings.Contains(ev.Verdict, "New connections: 100% from 127.0.0.0/24 (top IP 127.0.0.2, ") {
		t.Errorf("verdict does not name the sources: %q", ev.Verdict)
	}
	for _, s := range at.TopIPs {
		if s.IP == "127.0.0.9" {
			t.Errorf("the old pool was blamed: %+v", s)
		}
	}
}

func waitView(t *testing.T, hub *serve.Hub, ok func(serve.TargetView) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last serve.TargetView
	for time.Now().Before(deadline) {
		for _, v := range hub.Views() {
			last = v
			if ok(v) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	raw, _ := json.Marshal(last)
	t.Fatalf("condition not met within 20s; last view %.2000s", raw)
}
