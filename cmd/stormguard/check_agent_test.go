package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/sample"
)

// TestAgentFactsBasicAuth: an agent behind basic auth (--web.config.file)
// is asked with the credentials of the --agent URL, and neither the
// evidence's URL nor an error repeats the password.
func TestAgentFactsBasicAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "prom" || p != "s3cret-pw" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"targets":[{"target":"127.0.0.1:6379","sample":{"valkey":{"connected_clients":3,"maxclients":3,"rejected_connections":7}}}]}`))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	af := agentFacts(t.Context(), "http://prom:s3cret-pw@"+host, "127.0.0.1:6379", "")
	if af.Err != "" || af.Rejected == nil || *af.Rejected != 7 {
		t.Fatalf("with credentials: %+v", af)
	}
	if strings.Contains(af.URL, "s3cret-pw") {
		t.Errorf("password in the evidence URL %q", af.URL)
	}

	af = agentFacts(t.Context(), "http://prom:wrong-pw@"+host, "127.0.0.1:6379", "")
	if af.Err != "agent answered 401 Unauthorized" || strings.Contains(af.URL, "wrong-pw") {
		t.Errorf("wrong credentials: %+v", af)
	}

	srv.Close()
	af = agentFacts(t.Context(), "http://prom:s3cret-pw@"+host, "127.0.0.1:6379", "")
	if !strings.HasPrefix(af.Err, "no agent answered: ") || strings.Contains(af.Err+af.URL, "s3cret-pw") {
		t.Errorf("agent gone: %+v", af)
	}
}

// With several targets at one address in different namespaces (pods whose
// Valkey the agent names 127.0.0.1:6379@NAME), check picks the one in its
// own namespace, compared by inode.
func TestAgentTargetSameNamespace(t *testing.T) {
	dir := t.TempDir()
	nsA, nsB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{nsA, nsB} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	targets := []agentTarget{
		{Target: "127.0.0.1:6379", Sample: &sample.Sample{}},
		{Target: "127.0.0.1:6379@a", Sample: &sample.Sample{NetNS: nsA}},
		{Target: "127.0.0.1:6379@b", Sample: &sample.Sample{NetNS: nsB}},
		{Target: "127.0.0.1:6380", Sample: &sample.Sample{}},
	}
	for netns, want := range map[string]int{"": 0, nsA: 1, nsB: 2, filepath.Join(dir, "missing"): -1} {
		if got := sameNamespaceTarget(targets, "127.0.0.1:6379", netns); got != want {
			t.Errorf("netns %q: target %d, want %d", netns, got, want)
		}
	}
	if got := addressTarget(targets, "127.0.0.1:6380"); got != 3 {
		t.Errorf("by address: %d, want 3", got)
	}
	if got := addressTarget(targets[1:3], "127.0.0.1:6379"); got != -1 {
		t.Errorf("two pods on the port, neither named by the address alone: %d, want -1", got)
	}
}
