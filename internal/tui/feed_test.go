package tui

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/serve"
)

// TestFeedsGiveTheSameView checks that the in-process hub hands top the
// typed view directly, and that the HTTP feed decodes the same view from
// the API (loopback only).
func TestFeedsGiveTheSameView(t *testing.T) {
	h := serve.NewHub(nil, 10, 10)
	rate, occ := 4100.0, 0.75
	in := detect.View{Target: "127.0.0.1:6379", NewConnRate: &rate, AcceptOccupancy: &occ, AcceptLimit: sample.U64(64)}
	h.Publish(&sample.Sample{Target: "127.0.0.1:6379", Time: time.Unix(1700000000, 0)}, serve.State{Name: "storm", Code: 2}, "primary", &in)
	srv := httptest.NewServer(serve.Handler(h, serve.Options{}))
	defer srv.Close()
	want, _ := json.Marshal(in)
	for _, tc := range []struct {
		name string
		feed Feed
	}{
		{"hub", HubFeed(h)},
		{"agent", AgentFeed(srv.URL, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			views, _, err := tc.feed()
			if err != nil {
				t.Fatal(err)
			}
			if len(views) != 1 || views[0].View == nil {
				t.Fatalf("got %d views (first has typed view: %v), want 1 with a view", len(views), len(views) == 1 && views[0].View != nil)
			}
			got, _ := json.Marshal(views[0].View)
			if string(got) != string(want) {
				t.Errorf("view:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// An agent that requires a token says so through top's feed error: with
// no token, that --bearer-token-file is needed; with a wrong one, that it
// was refused.
func TestAgentFeedTokenErrors(t *testing.T) {
	h := serve.NewHub(nil, 10, 10)
	srv := httptest.NewServer(serve.Handler(h, serve.Options{BearerToken: "right"}))
	defer srv.Close()
	for token, want := range map[string]string{
		"":      "requires a bearer token (give --bearer-token-file",
		"wrong": "refused the token of --bearer-token-file",
	} {
		if _, _, err := AgentFeed(srv.URL, token)(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("token %q: err %v, want it to say %q", token, err, want)
		}
	}
	if _, _, err := AgentFeed(srv.URL, "right")(); err != nil {
		t.Errorf("right token: %v", err)
	}
}
