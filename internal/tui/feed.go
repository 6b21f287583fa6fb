package tui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/serve"
)

// AgentFeed polls a running agent's /api/v1/state and /api/v1/events.
func AgentFeed(base, token string) Feed {
	base = strings.TrimRight(base, "/")
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(path string, v any) error {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, base+path, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusUnauthorized && token == "":
			// The agent runs with --bearer-token-file; /healthz, which
			// top's auto-detection asks, needs no token, the API does.
			return fmt.Errorf("GET %s: %s: the agent requires a bearer token (give --bearer-token-file with the agent's token)", path, resp.Status)
		case resp.StatusCode == http.StatusUnauthorized:
			return fmt.Errorf("GET %s: %s: the agent refused the token of --bearer-token-file", path, resp.Status)
		case resp.StatusCode != http.StatusOK:
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	return func() ([]serve.TargetView, []json.RawMessage, error) {
		var st struct {
			Targets []serve.TargetView `json:"targets"`
		}
		if err := get("/api/v1/state", &st); err != nil {
			return nil, nil, err
		}
		// Over HTTP the view arrives as JSON; decode it once here so the
		// model reads the same typed view as from an in-process hub.
		for i := range st.Targets {
			if len(st.Targets[i].Detail) == 0 {
				continue
			}
			var d detect.View
			if json.Unmarshal(st.Targets[i].Detail, &d) == nil {
				st.Targets[i].View = &d
			}
		}
		var ev struct {
			Events []json.RawMessage `json:"events"`
		}
		if err := get("/api/v1/events", &ev); err != nil {
			return nil, nil, err
		}
		return st.Targets, ev.Events, nil
	}
}

// HubFeed reads an in-process hub.
func HubFeed(h *serve.Hub) Feed {
	return func() ([]serve.TargetView, []json.RawMessage, error) {
		return h.Views(), h.Events(), nil
	}
}
