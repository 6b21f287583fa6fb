package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationTLSClientCertificates runs sample against a Valkey that
// serves TLS only (its plain port is closed once it is up) and requires
// client certificates from a private CA, as tls-auth-clients yes does by
// default. The server certificate names only valkey.test, so verification
// succeeds only with --sni valkey.test.
func TestIntegrationTLSClientCertificates(t *testing.T) {
	sandboxtest.Require(t)
	certs, err := sandbox.MakeCerts(t.TempDir(), "valkey.test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := sandbox.MakeCerts(t.TempDir(), "valkey.test")
	if err != nil {
		t.Fatal(err)
	}
	const tlsPort = 6390
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: certs.ValkeyArgs(tlsPort, "yes")})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := sb.Command(ctx, "valkey-cli", "-p", strconv.Itoa(sb.Port), "CONFIG", "SET", "port", "0").CombinedOutput(); err != nil {
		t.Fatalf("close the plain port: %v %s", err, out)
	}
	if err := sb.Ping(ctx); err == nil {
		t.Fatal("the plain port still answers; want TLS only")
	}
	target := "valkeys://127.0.0.1:" + strconv.Itoa(tlsPort)
	base := []string{"sample", "--valkey", target, "--netns", sb.NetNS, "--sni", "valkey.test"}
	args := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }

	t.Run("verified with a client certificate", func(t *testing.T) {
		out, msg, code, _ := runCLI(t, args("--cacert", certs.CA, "--cert", certs.ClientCert, "--key", certs.ClientKey, "--count", "2", "--interval", "100ms", "--json")...)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, msg)
		}
		for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var s struct {
				Valkey *struct {
					ConnectedClients *uint64 `json:"connected_clients"`
				} `json:"valkey"`
			}
			if err := json.Unmarshal([]byte(l), &s); err != nil {
				t.Fatalf("line %d: %v", i, err)
			}
			if s.Valkey == nil || s.Valkey.ConnectedClients == nil {
				t.Fatalf("line %d lacks Valkey fields over TLS: %s", i, l)
			}
		}
	})
	failures := []struct {
		name  string
		extra []string
		want  string
	}{
		{"wrong CA", []string{"--cacert", other.CA, "--cert", certs.ClientCert, "--key", certs.ClientKey}, "certificate"},
		{"no client certificate", []string{"--cacert", certs.CA}, "certificate"},
		{"wrong server name", []string{"--cacert", certs.CA, "--cert", certs.ClientCert, "--key", certs.ClientKey, "--sni", "other.test"}, "other.test"},
		{"client certificate of another CA", []string{"--cacert", certs.CA, "--cert", other.ClientCert, "--key", other.ClientKey}, "certificate"},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			_, msg, code, _ := runCLI(t, args(tt.extra...)...)
			if code != exitUsage || strings.Contains(msg, "\n") || !strings.Contains(msg, tt.want) {
				t.Fatalf("exit %d, %q; want exit 2 and one line containing %q", code, msg, tt.want)
			}
		})
	}
}

// TestIntegrationTLSToPlaintextPort: valkeys:// to a plaintext Valkey gets
// no TLS answer (the server waits for the rest of a "command"); sample and
// check say what that likely means instead of only "no answer".
func TestIntegrationTLSToPlaintextPort(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	target := "valkeys://" + sb.Addr() + "?insecure=1"
	for _, args := range [][]string{
		{"sample", "--valkey", target, "--netns", sb.NetNS},
		{"check", "--valkey", target, "--netns", sb.NetNS, "--window", "100ms", "--timeout", "1s"},
	} {
		_, msg, code, _ := runCLI(t, args...)
		if code != exitUsage || !strings.Contains(msg, "plaintext port reached with valkeys://") || strings.Contains(msg, "\n") {
			t.Errorf("%s: exit %d, %q; want exit 2 and one line naming a plaintext port", args[0], code, msg)
		}
	}
}
