package serve

import (
	"cmp"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stormguard/stormguard/internal/sample"
)

//go:embed dashboard.html
var dashboardHTML []byte

// Options configure the HTTP handler.
type Options struct {
	// Version is reported by stormguard_build_info.
	Version string
	// BearerToken, when set, is required on every path but /healthz.
	BearerToken string
	// Healthy reports whether the agent is sampling (nil = always).
	Healthy func() error
	// MaxStreams caps concurrent /api/v1/stream clients; one more gets
	// 503. Zero means DefaultMaxStreams.
	MaxStreams int
	// streamWriteTimeout overrides streamWriteTimeout (tests).
	streamWriteTimeout time.Duration
}

// DefaultMaxStreams is the default cap on concurrent /api/v1/stream
// clients: far more dashboards than anyone keeps open, while 64 stuck
// clients cost the agent a few MiB at most.
const DefaultMaxStreams = 64

// streamWriteTimeout drops a stream client whose connection accepts no
// data for this long (it stopped reading and its socket buffers are full).
const streamWriteTimeout = 10 * time.Second

// ReadTokenFile reads a bearer token from a file, trimming the newline.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read bearer token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("bearer token file %s is empty", path)
	}
	return tok, nil
}

// Handler returns the agent's HTTP handler.
func Handler(h *Hub, o Options) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(h, o.Version))
	// The contract: every metric name starts with stormguard_, the Go
	// runtime's and the process's standard series too (stormguard_go_*,
	// stormguard_process_*).
	prometheus.WrapRegistererWithPrefix("stormguard_", reg).MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if o.Healthy != nil {
			if err := o.Healthy(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /api/v1/state", func(w http.ResponseWriter, r *http.Request) {
		views := h.Views()
		// The contract's shape: targets with target, state, since; the
		// latest sample and detector detail ride along.
		writeJSON(w, map[string]any{"targets": views})
	})
	mux.HandleFunc("GET /api/v1/samples", func(w http.ResponseWriter, r *http.Request) {
		var since time.Time
		if v := r.URL.Query().Get("since"); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				http.Error(w, "since: want RFC3339 time", http.StatusBadRequest)
				return
			}
			since = t
		}
		samples := h.Samples(r.URL.Query().Get("target"), since)
		if samples == nil {
			samples = []*sample.Sample{} // [] rather than null: clients iterate it
		}
		writeJSON(w, map[string]any{"samples": samples})
	})
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		events := h.Events()
		if events == nil {
			events = []json.RawMessage{} // [] rather than null: clients iterate it
		}
		writeJSON(w, map[string]any{"events": events})
	})
	maxStreams := o.MaxStreams
	if maxStreams <= 0 {
		maxStreams = DefaultMaxStreams
	}
	streams := make(chan struct{}, maxStreams)
	mux.HandleFunc("GET /api/v1/stream", func(w http.ResponseWriter, r *http.Request) {
		select {
		case streams <- struct{}{}:
			defer func() { <-streams }()
		default:
			// Close the connection with the refusal: a client that
			// keeps it open (and does not read) would otherwise cost
			// the agent an idle connection each (~25 KiB: goroutine,
			// buffers); 3,000 of them raised RSS by ~80 MiB.
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "10")
			http.Error(w, fmt.Sprintf("too many event streams open (limit %d, watch --http-max-streams)", maxStreams), http.StatusServiceUnavailable)
			return
		}
		stream(h, w, r, cmp.Or(o.streamWriteTimeout, streamWriteTimeout))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'")
		w.Write(dashboardHTML)
	})
	if o.BearerToken == "" {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if subtle.ConstantTimeCompare([]byte(got), []byte(o.BearerToken)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="stormguard"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// stream serves server-sent events: "sample" per target sample and "event"
// per detector event, starting with the current state of every target. A
// client that falls behind (subscriberBuffer messages waiting) or whose
// connection takes no data for streamWriteTimeout is disconnected.
func stream(h *Hub, w http.ResponseWriter, r *http.Request, writeTimeout time.Duration) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	rc := http.NewResponseController(w)
	write := func(b []byte) error {
		// Not every ResponseWriter supports deadlines (tests'
		// recorders); the buffer bound still holds there.
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		fl.Flush()
		return nil
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	sub := h.subscribe()
	defer h.unsubscribe(sub)
	var first []byte
	for _, v := range h.Views() {
		first = append(first, sseMessage("sample", v)...)
	}
	if err := write(append(first, ": connected\n\n"...)); err != nil {
		return
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-sub.gone:
			return
		case msg := <-sub.c:
			err = write(msg)
		case <-keepalive.C:
			err = write([]byte(": keepalive\n\n"))
		}
		if err != nil {
			return
		}
	}
}
