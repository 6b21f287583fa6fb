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
func agentFacts(ctx context.Context, base, hostPort, netns string) *checklist.AgentFacts {
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
		Targets []agentTarget `json:"targets"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		af.Err = "agent's state does not parse: " + err.Error()
		return af
	}
	match := sameNamespaceTarget(st.Targets, hostPort, netns)
	if match < 0 {
		match = addressTarget(st.Targets, hostPort)
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

// agentTarget is a target of the agent's /api/v1/state.
type agentTarget = struct {
	Target string         `json:"target"`
	Sample *sample.Sample `json:"sample"`
}

// sameNamespaceTarget finds the one agent target at hostPort in check's
// namespace (netns, "" for check's own): the agent names a discovered
// server in another namespace hostPort@NAME, so on a node with several
// pods at 127.0.0.1:6379 the address alone would pick any of them (or
// the host's). The namespaces are compared by inode; -1 when not exactly
// one target fits.
func sameNamespaceTarget(targets []agentTarget, hostPort, netns string) int {
	var want uint64
	if netns != "" {
		var err error
		if want, err = netnsInode(netns); err != nil {
			return -1
		}
	}
	match := -1
	for i, t := range targets {
		if t.Target != hostPort && !strings.HasPrefix(t.Target, hostPort+"@") || t.Sample == nil {
			continue
		}
		same := t.Sample.NetNS == "" && netns == ""
		if t.Sample.NetNS != "" && netns != "" {
			ino, err := netnsInode(t.Sample.NetNS)
			same = err == nil && ino == want
		}
		if !same {
			continue
		}
		if match >= 0 {
			return -1
		}
		match = i
	}
	return match
}

// addressTarget finds the agent target named hostPort, else the only one
// on its port; -1 when none or several fit.
func addressTarget(targets []agentTarget, hostPort string) int {
	_, port, _ := strings.Cut(hostPort, "]:")
	if port == "" {
		port = hostPort[strings.LastIndex(hostPort, ":")+1:]
	}
	match := -1
	for i, t := range targets {
		if t.Target == hostPort {
			return i
		}
		if strings.HasSuffix(t.Target, ":"+port) {
			if match >= 0 {
				match = -2 // two targets on that port: ambiguous
			} else if match == -1 {
				match = i
			}
		}
	}
	return max(match, -1)
}

// redactURL hides the password of a URL's userinfo (u:pass@ → u:xxxxx@).
func redactURL(s string) string {
	u, err := neturl.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
