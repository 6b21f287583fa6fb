package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	neturl "net/url"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/checklist"
	"github.com/stormguard/stormguard/internal/sample"
)

// agentFacts asks a running agent (watch) for its latest sample of the
// Valkey at hostPort, for when Valkey refused check's own connection at
// maxclients. The agent keeps one reserved connection, so it still reads
// INFO then. The target is matched by address, else by a unique port.
func agentFacts(ctx context.Context, base, hostPort string) *checklist.AgentFacts {
	url := strings.TrimSuffix(base, "/") + "/api/v1/state"
	// Basic-auth credentials in the URL (an agent behind
	// --web.config.file) are sent by the HTTP client, never printed.
	af := &checklist.AgentFacts{URL: redactURL(url)}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		af.Err = "bad --agent URL (want http://HOST:PORT)"
		return af
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// url.Error quotes the URL; show it without its password.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			ue.URL = af.URL
		}
		af.Err = "no agent answered: " + err.Error()
		return af
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		af.Err = "agent answered " + resp.Status
		return af
	}
	var st struct {
		Targets []struct {
			Target string         `json:"target"`
			Sample *sample.Sample `json:"sample"`
		} `json:"targets"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		af.Err = "agent's state does not parse: " + err.Error()
		return af
	}
	_, port, _ := strings.Cut(hostPort, "]:")
	if port == "" {
		port = hostPort[strings.LastIndex(hostPort, ":")+1:]
	}
	match := -1
	for i, t := range st.Targets {
		if t.Target == hostPort {
			match = i
			break
		}
		if strings.HasSuffix(t.Target, ":"+port) {
			if match >= 0 {
				match = -2 // two targets on that port: ambiguous
			} else if match == -1 {
				match = i
			}
		}
	}
	if match < 0 {
		af.Err = fmt.Sprintf("the agent does not watch %s", hostPort)
		return af
	}
	s := st.Targets[match].Sample
	if s == nil || s.Valkey == nil {
		af.Err = "the agent's latest sample of " + st.Targets[match].Target + " has no Valkey fields"
		return af
	}
	af.SampleTime = s.Time
	af.Rejected, af.Connected, af.MaxClients = s.Valkey.RejectedConnections, s.Valkey.ConnectedClients, s.Valkey.MaxClients
	return af
}

// redactURL hides the password of a URL's userinfo (u:pass@ → u:xxxxx@).
func redactURL(s string) string {
	u, err := neturl.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
