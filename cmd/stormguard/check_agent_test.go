package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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

	af := agentFacts(t.Context(), "http://prom:s3cret-pw@"+host, "127.0.0.1:6379")
	if af.Err != "" || af.Rejected == nil || *af.Rejected != 7 {
		t.Fatalf("with credentials: %+v", af)
	}
	if strings.Contains(af.URL, "s3cret-pw") {
		t.Errorf("password in the evidence URL %q", af.URL)
	}

	af = agentFacts(t.Context(), "http://prom:wrong-pw@"+host, "127.0.0.1:6379")
	if af.Err != "agent answered 401 Unauthorized" || strings.Contains(af.URL, "wrong-pw") {
		t.Errorf("wrong credentials: %+v", af)
	}

	srv.Close()
	af = agentFacts(t.Context(), "http://prom:s3cret-pw@"+host, "127.0.0.1:6379")
	if !strings.HasPrefix(af.Err, "no agent answered: ") || strings.Contains(af.Err+af.URL, "s3cret-pw") {
		t.Errorf("agent gone: %+v", af)
	}
}
