package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// chromiumBinaries are the names Debian, Ubuntu and Google use.
var chromiumBinaries = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// findChromium returns the headless browser, skipping (or failing under
// STORMGUARD_REQUIRE_INTEGRATION=1) when there is none.
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("STORMGUARD_CHROMIUM"); p != "" {
		return p
	}
	for _, n := range chromiumBinaries {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("no headless browser (%s) in PATH; scripts/install-deps.sh installs the Debian package chromium", strings.Join(chromiumBinaries, ", "))
	sandboxtest.SkipOrFail(t, msg)
	return ""
}

// chromiumArgs are the flags for a quiet, isolated, offline-safe headless run.
func chromiumArgs(profile string, extra ...string) []string {
	return append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + profile,
	}, extra...)
}

// runChromium runs chromium with a deadline and returns stdout.
func runChromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, chromiumArgs(t.TempDir(), args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Kill the whole browser (renderer, GPU and zygote processes) on timeout.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("chromium %v: %v\n%s", args, err, tail(errb.String(), 2000))
	} else if ctx.Err() != nil {
		t.Fatalf("chromium %v: no result within 90s\n%s", args, tail(errb.String(), 2000))
	}
	return out.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

const (
	dashTarget  = "127.0.0.1:6379"
	dashCalm    = "10.0.0.5:6380"
	dashVerdict = "Connection storm on :6379: accept queue full (64/64), 1,200 new connections/s vs 40/s normal."
	dashReason  = "accept queue full (64/64) and listen drops 310/s"
)

func f64(v float64) *float64 { return &v }

// dashboardHub returns a hub holding a storm on dashTarget (20 samples, the
// detector's view of each, one state event) and a calm second target.
func dashboardHub(t0 time.Time) *Hub {
	h := NewHub([]string{"listenq", "tcp", "conntrack", "valkey", "nic"}, 100, 100)
	var passive uint64 = 10000
	for i := 0; i < 20; i++ {
		ts := t0.Add(time.Duration(i) * time.Second)
		rate := 40.0
		if i >= 10 {
			rate = 1200
		}
		passive += uint64(rate)
		depthMax, drops := uint64(3), 0.0
		if i >= 12 {
			depthMax, drops = 64, 310
		}
		s := &sample.Sample{
			Time: ts, Target: dashTarget, Port: 6379, IntervalMS: 1000,
			Listen:    &sample.Listen{Depth: sample.U64(depthMax - 1), DepthMax: sample.U64(depthMax), Limit: sample.U64(64), Sockets: 1},
			SynRecv:   sample.U64(128),
			TCP:       &sample.TCP{PassiveOpens: sample.U64(passive), ListenOverflows: sample.U64(uint64(i) * 310), ListenDrops: sample.U64(uint64(i) * 310)},
			Conntrack: &sample.Conntrack{Count: sample.U64(52000), Max: sample.U64(65536)},
			Valkey:    &sample.Valkey{ConnectedClients: sample.U64(9990), MaxClients: sample.U64(10000), PingMS: sample.F64(1.5)},
			Errors:    map[string]string{"nic": "unavailable: no ENA driver on lo"},
		}
		st := State{Name: "calm", Code: 0, Since: t0}
		if i >= 12 {
			st = State{Name: "storm", Code: 2, Since: t0.Add(12 * time.Second), Verdict: dashVerdict}
		}
		v := detect.View{
			Time: ts, Target: dashTarget, NewConnRate: f64(rate), NewConnBaseline: f64(40), NewConnThreshold: f64(200),
			NewConnSource: "tcp.passive_opens", DroppedRate: f64(drops),
			Rates:          detect.Rates{ListenOverflows: f64(drops)},
			AcceptDepthMax: sample.U64(depthMax), AcceptLimit: sample.U64(64), SynRecv: sample.U64(128),
			ConntrackCount: sample.U64(52000), ConntrackMax: sample.U64(65536),
			ConnectedClients: sample.U64(9990), MaxClients: sample.U64(10000),
			PingMS: sample.F64(1.5), PingBaselineMS: f64(0.4),
		}
		if i >= 12 {
			v.Signals = []detect.Signal{{Name: "accept_queue_full", Level: detect.LevelStorm, Scope: detect.ScopePort, Value: 64, Threshold: 64, PerPortEvidence: true, Text: "accept queue full (64/64)"}}
		}
		if i == 12 {
			h.PublishEvent(detect.Event{Time: ts, Type: "state", Target: dashTarget, From: detect.Calm, To: detect.Storm, Reason: dashReason, Verdict: dashVerdict, StateCode: 2})
		}
		h.Publish(s, st, "primary", &v)
	}
	calm := &sample.Sample{
		Time: t0.Add(19 * time.Second), Target: dashCalm, Port: 6380,
		Listen: &sample.Listen{DepthMax: sample.U64(0), Limit: sample.U64(511)},
		Valkey: &sample.Valkey{ConnectedClients: sample.U64(12), MaxClients: sample.U64(10000)},
		Errors: map[string]string{},
	}
	h.Publish(calm, State{Name: "calm", Since: t0}, "replica", nil)
	return h
}

// liveAfterFirstFlush wraps the handler for a --dump-dom run: once the first
// stream has sent its initial state, live() publishes into the hub (so the
// page must take it from the open stream, not from the backfill); and every
// stream ends after a while, because Chromium's virtual time does not
// advance while a request is open.
func liveAfterFirstFlush(next http.Handler, live func()) http.Handler {
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/stream" {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		next.ServeHTTP(&flushHook{ResponseWriter: w, fn: func() { once.Do(live) }}, r.WithContext(ctx))
	})
}

type flushHook struct {
	http.ResponseWriter
	fn func()
}

func (f *flushHook) Flush() {
	f.ResponseWriter.(http.Flusher).Flush()
	f.fn()
}

// TestIntegrationDashboard loads the dashboard in headless Chromium against
// a live handler and checks what it rendered: the numbers the on-call
// engineer reads, from the backfill and from the live stream.
func TestIntegrationDashboard(t *testing.T) {
	bin := findChromium(t)
	t0 := time.Now().Add(-20 * time.Second)
	h := dashboardHub(t0)
	live := func() {
		// A later sample and event, sent only over the open stream.
		ts := t0.Add(20 * time.Second)
		s := &sample.Sample{
			Time: ts, Target: dashTarget, Port: 6379,
			Listen:       &sample.Listen{DepthMax: sample.U64(64), Limit: sample.U64(64)},
			SynRecv:      sample.U64(131),
			AcceptWaitMS: &sample.AcceptWait{P50: sample.F64(180), P99: sample.F64(412.5), Max: sample.F64(430)},
			Valkey:       &sample.Valkey{ConnectedClients: sample.U64(9995), MaxClients: sample.U64(10000), PingMS: sample.F64(2.5)},
			Errors:       map[string]string{"nic": "unavailable: no ENA driver on lo", "conntrack": "unavailable: nf_conntrack not loaded"},
		}
		h.Publish(s, State{Name: "storm", Code: 2, Since: t0.Add(12 * time.Second), Verdict: dashVerdict}, "primary", &detect.View{
			Time: ts, Target: dashTarget, NewConnRate: f64(1234), NewConnBaseline: f64(40), DroppedRate: f64(310),
			AcceptDepthMax: sample.U64(64), AcceptLimit: sample.U64(64), SynRecv: sample.U64(131),
			ConnectedClients: sample.U64(9995), MaxClients: sample.U64(10000), PingMS: sample.F64(2.5),
		})
		h.PublishEvent(map[string]any{"time": ts, "type": "defuse", "target": dashTarget, "reason": "live event: ratelimit-syn applied for 60s"})
	}
	srv := httptest.NewServer(liveAfterFirstFlush(Handler(h, Options{Version: "test"}), live))
	t.Cleanup(srv.Close)
	dom := runChromium(t, bin, "--dump-dom", "--virtual-time-budget=5000", srv.URL+"/")

	storm, calm := cardHTML(t, dom, dashTarget), cardHTML(t, dom, dashCalm)
	if strings.Index(dom, `data-target="`+dashTarget) > strings.Index(dom, `data-target="`+dashCalm) {
		t.Errorf("the storm card is not above the calm one")
	}
	checks := []struct{ name, html, want string }{
		{"storm class", storm, `class="card storm"`},
		{"state banner", storm, `<span class="state">storm</span>`},
		{"role", storm, `<span class="role">primary</span>`},
		{"verdict", storm, `<div class="verdict">` + dashVerdict + `</div>`},
		{"unavailable conntrack (live sample)", storm, "<li>conntrack: unavailable: nf_conntrack not loaded</li>"},
		{"unavailable nic", storm, "<li>nic: unavailable: no ENA driver on lo</li>"},
		{"calm class", calm, `class="card calm"`},
		{"calm verdict", calm, `<div class="verdict">Calm: accept queue peak 0 of 511, no drops.</div>`},
		{"state event", dom, `<span class="pill calm">calm</span><span> → </span><span class="pill storm">storm</span></td><td title="` + dashReason + `">` + dashVerdict},
		{"live event", dom, "<td>live event: ratelimit-syn applied for 60s</td>"},
	}
	for _, c := range checks {
		if !strings.Contains(c.html, c.want) {
			t.Errorf("%s: rendered page lacks %q", c.name, c.want)
		}
	}
	if live, st := strings.Index(dom, "live event: ratelimit-syn"), strings.Index(dom, `title="`+dashReason); live < 0 || st < 0 || live > st {
		t.Errorf("event timeline is not newest first (live event at %d, state event at %d)", live, st)
	}
	tiles := []struct {
		target, html, tile, value, class string
	}{
		{dashTarget, storm, "newconn", "1,234", ""}, // only in the live sample
		{dashTarget, storm, "acceptq", "64 / 64", "bad"},
		{dashTarget, storm, "drops", "310", "bad"},
		{dashTarget, storm, "synrecv", "131", ""},
		{dashTarget, storm, "conntrack", "– / –", ""}, // unavailable: a dash, never 0
		{dashTarget, storm, "clients", "9,995 / 10,000", "warn"},
		{dashTarget, storm, "ping", "2.5 ms", ""},
		{dashTarget, storm, "acceptwait", "413 ms", ""}, // from the live sample
		{dashCalm, calm, "acceptwait", "–", ""},         // no eBPF keys: a dash
		{dashCalm, calm, "acceptq", "0 / 511", ""},
		{dashCalm, calm, "clients", "12 / 10,000", ""},
	}
	for _, tc := range tiles {
		class, value := tile(tc.html, tc.tile)
		if value != tc.value || class != tc.class {
			t.Errorf("%s tile %s: value %q class %q, want %q class %q", tc.target, tc.tile, value, class, tc.value, tc.class)
		}
	}
	// The new-connections sparkline has the backfilled history (20 samples
	// from /api/v1/samples, rates from counters) plus the live point.
	if n := sparkPoints(storm, "rate"); n < 20 {
		t.Errorf("new connections sparkline has %d points, want at least 20", n)
	}
	if n := sparkPoints(storm, "qlim"); n < 20 {
		t.Errorf("accept-queue limit line has %d points, want at least 20", n)
	}
	if t.Failed() {
		t.Logf("rendered DOM:\n%s", dom)
	}
}

// withSources adds an attribution list to the storm target of a
// /api/v1/state reply, as an agent with source attribution sends it.
func withSources(t *testing.T, api http.Handler, w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, r)
	var st struct {
		Targets []map[string]any `json:"targets"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Errorf("decode /api/v1/state: %v", err)
	}
	for _, v := range st.Targets {
		if v["target"] == dashTarget {
			v["sources"] = []map[string]any{
				{"prefix": "10.0.3.0/24", "count": 11500, "share": 0.9},
				{"ip": "10.0.4.7", "count": 640, "share": 0.05},
			}
		}
	}
	writeJSON(w, st)
}

// TestIntegrationDashboardStale: when the agent stops streaming after the
// page loaded, the page must say so rather than keep showing old numbers as
// if they were current. (Its /api/v1/state also carries attribution
// sources, which the page shows when present.)
func TestIntegrationDashboardStale(t *testing.T) {
	bin := findChromium(t)
	h := dashboardHub(time.Now().Add(-20 * time.Second))
	api := Handler(h, Options{Version: "test"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/stream" {
			http.Error(w, "agent going away", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/api/v1/state" {
			withSources(t, api, w, r)
			return
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	dom := runChromium(t, bin, "--dump-dom", "--virtual-time-budget=15000", srv.URL+"/")
	storm := cardHTML(t, dom, dashTarget)
	for _, want := range []string{
		`<span id="conn" class="down">agent unreachable – retrying…</span>`,
		`<span class="stale">NO DATA for 1`, // 10-15 s of virtual time
		`data-stale="1"`,
		`<div class="value">64 / 64</div>`, // the last numbers stay, dimmed
		`<div class="attr"><h3>Top sources of new connections</h3><div class="body"><table class="attr"><tr><td>10.0.3.0/24</td><td>11,500</td><td>90%</td></tr><tr><td>10.0.4.7</td><td>640</td><td>5%</td></tr></table>`,
	} {
		html := storm
		if strings.HasPrefix(want, `<span id="conn"`) {
			html = dom
		}
		if !strings.Contains(html, want) {
			t.Errorf("stale page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("rendered DOM:\n%s", dom)
	}
}

// cardHTML returns the markup of one target's card in the dumped DOM.
func cardHTML(t *testing.T, dom, target string) string {
	t.Helper()
	i := strings.Index(dom, `data-target="`+target+`"`)
	if i < 0 {
		t.Fatalf("no card for %s in the rendered page:\n%s", target, dom)
	}
	i = strings.LastIndex(dom[:i], "<div ")
	rest := dom[i:]
	if j := strings.Index(rest[1:], `<div class="card `); j >= 0 {
		rest = rest[:j+1]
	}
	if j := strings.Index(rest, "</main>"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

var tileRE = regexp.MustCompile(`<div class="tile ?([a-z]*)" data-k="([a-z]+)"><div class="label">[^<]*</div><div class="value">([^<]*)</div>`)

// tile returns the status class and big value of one tile of a card.
func tile(card, key string) (class, value string) {
	for _, m := range tileRE.FindAllStringSubmatch(card, -1) {
		if m[2] == key {
			return m[1], m[3]
		}
	}
	return "?", "(no tile " + key + ")"
}

var polyRE = regexp.MustCompile(`<polyline points="([^"]*)"[^>]*data-series="([a-z]+)"`)

// sparkPoints counts the points of a sparkline series in a card.
func sparkPoints(card, series string) int {
	for _, m := range polyRE.FindAllStringSubmatch(card, -1) {
		if m[2] == series {
			return len(strings.Fields(m[1]))
		}
	}
	return 0
}

// TestDashboardScreenshot writes a PNG of the dashboard with the fixture's
// storm to $STORMGUARD_SCREENSHOT, for a human to look at (skipped unless
// set): STORMGUARD_SCREENSHOT=/tmp/dash.png go test -run Screenshot ./internal/serve
func TestDashboardScreenshot(t *testing.T) {
	out := os.Getenv("STORMGUARD_SCREENSHOT")
	if out == "" {
		t.Skip("set STORMGUARD_SCREENSHOT=FILE.png to write a screenshot")
	}
	bin := findChromium(t)
	h := dashboardHub(time.Now().Add(-20 * time.Second))
	h.PublishEvent(map[string]any{"time": time.Now(), "type": "defuse", "target": dashTarget, "reason": "ratelimit-syn 20/s per source applied for 60s"})
	srv := httptest.NewServer(liveAfterFirstFlush(Handler(h, Options{Version: "test"}), func() {}))
	t.Cleanup(srv.Close)
	runChromium(t, bin, "--screenshot="+out, "--window-size=1400,1300", "--hide-scrollbars", "--virtual-time-budget=6000", srv.URL+"/")
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot written to %s: %v", out, err)
	}
}
