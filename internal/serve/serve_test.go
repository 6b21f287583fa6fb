package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stormguard/stormguard/internal/sample"
)

var update = flag.Bool("update", false, "rewrite docs/metrics.md")

func testSample(t0 time.Time) *sample.Sample {
	return &sample.Sample{
		Time: t0, Target: "127.0.0.1:6379", Port: 6379,
		Listen:          &sample.Listen{Depth: sample.U64(3), DepthMax: sample.U64(64), Limit: sample.U64(64), Sockets: 2},
		SynRecv:         sample.U64(12),
		TCP:             &sample.TCP{ListenOverflows: sample.U64(1500), PassiveOpens: sample.U64(99)},
		Valkey:          &sample.Valkey{ConnectedClients: sample.U64(42), MaxClients: sample.U64(100), PingMS: sample.F64(1.5)},
		Errors:          map[string]string{"conntrack": "unavailable: nf_conntrack module not loaded"},
		SourceDurations: map[string]float64{"listenq": 0.2, "tcp": 0.1, "valkey": 1.6},
	}
}

func TestCollector(t *testing.T) {
	h := NewHub([]string{"listenq", "tcp", "conntrack", "valkey"}, 10, 10)
	h.Publish(testSample(time.Unix(1700000000, 0)), State{Name: "storm", Code: 2}, "primary", nil)
	c := newCollector(h, "test")
	want := `
# HELP stormguard_listen_queue_peak_length Largest accept-queue length seen by the fast poller during the last sampling interval.
# TYPE stormguard_listen_queue_peak_length gauge
stormguard_listen_queue_peak_length{target="127.0.0.1:6379"} 64
# HELP stormguard_storm_state Detector state per target: 0 calm, 1 surge (early warning), 2 storm (connections dropped or refused now), 3 recovering.
# TYPE stormguard_storm_state gauge
stormguard_storm_state{target="127.0.0.1:6379"} 2
# HELP stormguard_tcp_listen_overflows_total TcpExt ListenOverflows of the target's network namespace (not per port): SYNs or final ACKs dropped because an accept queue was full.
# TYPE stormguard_tcp_listen_overflows_total counter
stormguard_tcp_listen_overflows_total{target="127.0.0.1:6379"} 1500
# HELP stormguard_valkey_connected_clients Valkey INFO connected_clients (excluding replicas).
# TYPE stormguard_valkey_connected_clients gauge
stormguard_valkey_connected_clients{target="127.0.0.1:6379"} 42
# HELP stormguard_valkey_ping_seconds Round trip of PING over stormguard's reserved connection.
# TYPE stormguard_valkey_ping_seconds gauge
stormguard_valkey_ping_seconds{target="127.0.0.1:6379"} 0.0015
# HELP stormguard_source_up 1 if the signal source answered in the last sample, 0 if it was unavailable or timed out.
# TYPE stormguard_source_up gauge
stormguard_source_up{source="conntrack",target="127.0.0.1:6379"} 0
stormguard_source_up{source="listenq",target="127.0.0.1:6379"} 1
stormguard_source_up{source="tcp",target="127.0.0.1:6379"} 1
stormguard_source_up{source="valkey",target="127.0.0.1:6379"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"stormguard_listen_queue_peak_length", "stormguard_storm_state", "stormguard_tcp_listen_overflows_total",
		"stormguard_valkey_connected_clients", "stormguard_valkey_ping_seconds", "stormguard_source_up"); err != nil {
		t.Fatal(err)
	}
	// Unavailable signals are absent, never 0.
	if n := testutil.CollectAndCount(c, "stormguard_conntrack_entries"); n != 0 {
		t.Errorf("conntrack_entries exported %d series for an unavailable source", n)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}

func TestMetricNames(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range sampleMetrics {
		if !strings.HasPrefix(m.Name, "stormguard_") {
			t.Errorf("%s: every metric name starts with stormguard_", m.Name)
		}
		if seen[m.Name] {
			t.Errorf("%s: duplicate", m.Name)
		}
		seen[m.Name] = true
		if isCounter := m.Type == counter; isCounter != strings.HasSuffix(m.Name, "_total") {
			t.Errorf("%s: counters and only counters end in _total", m.Name)
		}
	}
}

func TestMetricsDoc(t *testing.T) {
	const path = "../../docs/metrics.md"
	got := MetricsMarkdown()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run: go test ./internal/serve -run TestMetricsDoc -update)", err)
	}
	if string(want) != got {
		t.Fatal("docs/metrics.md is stale: go test ./internal/serve -run TestMetricsDoc -update")
	}
}

func TestHandler(t *testing.T) {
	h := NewHub([]string{"valkey"}, 10, 10)
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h.Publish(testSample(since), State{Name: "surge", Code: 1, Since: since}, "", nil)
	h.PublishEvent(map[string]any{"type": "state", "target": "127.0.0.1:6379", "from": "calm", "to": "surge"})
	srv := httptest.NewServer(Handler(h, Options{Version: "t"}))
	defer srv.Close()

	var st struct {
		Targets []struct {
			Target, State string
			Since         time.Time
		}
	}
	getJSON(t, srv.URL+"/api/v1/state", &st)
	if len(st.Targets) != 1 || st.Targets[0].Target != "127.0.0.1:6379" || st.Targets[0].State != "surge" || !st.Targets[0].Since.Equal(since) {
		t.Fatalf("state = %+v", st)
	}
	var ev struct{ Events []map[string]any }
	getJSON(t, srv.URL+"/api/v1/events", &ev)
	if len(ev.Events) != 1 || ev.Events[0]["to"] != "surge" {
		t.Fatalf("events = %+v", ev)
	}
	var sm struct{ Samples []sample.Sample }
	getJSON(t, srv.URL+"/api/v1/samples?target=127.0.0.1:6379", &sm)
	if len(sm.Samples) != 1 || *sm.Samples[0].Valkey.ConnectedClients != 42 {
		t.Fatalf("samples = %+v", sm)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %v %v", err, resp)
	}
	resp.Body.Close()
	resp, err = http.Get(srv.URL + "/")
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/: %v %v", err, resp)
	}
	resp.Body.Close()
}

func TestBearerToken(t *testing.T) {
	h := NewHub(nil, 1, 1)
	srv := httptest.NewServer(Handler(h, Options{BearerToken: "s3cret"}))
	defer srv.Close()
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/metrics", "", 401}, {"/metrics", "Bearer wrong", 401}, {"/metrics", "Bearer s3cret", 200},
		{"/api/v1/state", "", 401}, {"/healthz", "", 200},
	} {
		req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s with %q: status %d, want %d", tc.path, tc.auth, resp.StatusCode, tc.want)
		}
	}
}

func TestStream(t *testing.T) {
	h := NewHub(nil, 10, 10)
	srv := httptest.NewServer(Handler(h, Options{}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Publish until the subscriber has seen one (it subscribes asynchronously).
	go func() {
		for i := 0; ctx.Err() == nil && i < 100; i++ {
			h.PublishEvent(map[string]any{"type": "state", "to": "storm"})
			time.Sleep(50 * time.Millisecond)
		}
	}()
	sc := bufio.NewScanner(resp.Body)
	var event string
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "event: ") {
			event = strings.TrimPrefix(line, "event: ")
		}
		if strings.HasPrefix(line, "data: ") && event == "event" {
			var m map[string]any
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &m); err != nil || m["to"] != "storm" {
				t.Fatalf("bad event data %q: %v", line, err)
			}
			return
		}
	}
	t.Fatalf("stream ended without an event: %v", sc.Err())
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// TestHandlerContractShapes: what the contract promises a scraper and an
// API client, on the real handler: every series on /metrics (the Go and
// process collectors' too) is named stormguard_*, and the JSON lists are
// [] rather than null before anything happened.
func TestHandlerContractShapes(t *testing.T) {
	h := NewHub([]string{"valkey"}, 10, 10)
	srv := httptest.NewServer(Handler(h, Options{Version: "t"}))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	names := 0
	for _, line := range strings.Split(string(body), "\n") {
		name, ok := strings.CutPrefix(line, "# TYPE ")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, " ")
		names++
		if !strings.HasPrefix(name, "stormguard_") {
			t.Errorf("/metrics has %s: every metric name starts with stormguard_", name)
		}
	}
	for _, want := range []string{"stormguard_build_info", "stormguard_go_goroutines", "stormguard_process_cpu_seconds_total"} {
		if !strings.Contains(string(body), "# TYPE "+want+" ") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if names == 0 {
		t.Fatalf("no metrics in %q", body)
	}

	for path, key := range map[string]string{"/api/v1/state": "targets", "/api/v1/events": "events", "/api/v1/samples": "samples"} {
		var doc map[string]json.RawMessage
		getJSON(t, srv.URL+path, &doc)
		if got := string(doc[key]); got != "[]" {
			t.Errorf("GET %s: %q = %s, want []", path, key, got)
		}
	}
}
