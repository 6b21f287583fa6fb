package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

type recorder struct {
	mu     sync.Mutex
	bodies [][]byte
	fail   int // fail this many requests first
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	r.bodies = append(r.bodies, b)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWebhookRetries(t *testing.T) {
	rec := &recorder{fail: 2}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := New(ctx, Options{WebhookURL: srv.URL})
	n.Notify(Alert{Time: time.Now(), Target: "t:1", From: "calm", To: "storm", Verdict: "storm!"})
	waitFor(t, func() bool { return rec.count() == 1 })
	var a Alert
	if err := json.Unmarshal(rec.bodies[0], &a); err != nil || a.To != "storm" || a.Target != "t:1" {
		t.Fatalf("webhook body %s: %v", rec.bodies[0], err)
	}
	// The receiver has the body before the sender has its answer.
	waitFor(t, func() bool { sent, _, _ := n.Stats(); return sent == 1 })
	if sent, failed, _ := n.Stats(); sent != 1 || failed != 0 {
		t.Fatalf("sent %d failed %d", sent, failed)
	}
}

func TestAlertmanagerFiresAndResolves(t *testing.T) {
	rec := &recorder{}
	mux := http.NewServeMux()
	mux.Handle("POST /api/v2/alerts", rec)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := New(ctx, Options{AlertmanagerURL: srv.URL})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n.Notify(Alert{Time: t0, Target: "t:1", From: "calm", To: "storm"})
	n.Notify(Alert{Time: t0.Add(time.Minute), Target: "t:1", From: "recovering", To: "calm"})
	waitFor(t, func() bool { return rec.count() == 2 })
	var fire, resolve []amAlert
	json.Unmarshal(rec.bodies[0], &fire)
	json.Unmarshal(rec.bodies[1], &resolve)
	if fire[0].Labels["alertname"] != "ValkeyConnectionStorm" || !fire[0].EndsAt.IsZero() {
		t.Fatalf("storm alert not firing: %+v", fire[0])
	}
	for _, a := range resolve {
		if a.EndsAt.IsZero() {
			t.Fatalf("calm did not resolve %s", a.Labels["alertname"])
		}
	}
}

func TestNotifyNeverBlocks(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := New(ctx, Options{WebhookURL: srv.URL, QueueSize: 4, Timeout: 200 * time.Millisecond, MaxAttempts: 1})
	// The receiver never answers until the test ends, so the loop
	// finishing at all proves Notify does not wait for it; the bound only
	// turns a hang into a failure.
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; i < 1000; i++ {
			n.Notify(Alert{Target: "t", To: "storm"})
		}
	}()
	select {
	case <-sent:
	case <-time.After(30 * time.Second):
		t.Fatal("Notify blocked with a stuck receiver")
	}
	if _, _, dropped := n.Stats(); dropped == 0 {
		t.Fatal("a full queue should drop and count")
	}
}

// TestHungWebhookDoesNotDelayAlertmanager: the webhook never answers while
// the test waits, yet Alertmanager gets the storm alert — each receiver has
// its own queue. (With one queue the alert would wait for all six webhook
// attempts, each up to the one-minute timeout.)
func TestHungWebhookDoesNotDelayAlertmanager(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release)
	got := make(chan struct{}, 16)
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- struct{}{} }))
	defer am.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := New(ctx, Options{WebhookURL: hung.URL, AlertmanagerURL: am.URL, Timeout: time.Minute})
	n.Notify(Alert{Target: "t", From: "calm", To: "storm"})
	select {
	case <-got:
	case <-time.After(30 * time.Second): // only turns a hang into a failure
		t.Fatal("Alertmanager got nothing while the webhook hung")
	}
	if _, failed, _ := n.Stats(); failed != 0 {
		t.Errorf("%d deliveries failed, want none yet (the webhook is still in its first attempt)", failed)
	}
}
