//go:build linux

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stormguard test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestIntegrationWatchWebConfig runs the built binary with
// --web.config.file (exporter-toolkit): TLS with a generated certificate
// and basic auth. The right user gets /metrics over HTTPS, a wrong password
// 401, plain HTTP nothing; --bearer-token-file together with it is a usage
// error, and the token alone still works (kept for existing users).
func TestIntegrationWatchWebConfig(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{})
	dir := t.TempDir()
	bin := filepath.Join(dir, "stormguard")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	certFile, keyFile, pool := writeCert(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  alice: %s\n", certFile, keyFile, hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(args ...string) (string, *sandboxtest.Buffer) {
		t.Helper()
		httpAddr := fmt.Sprintf("127.0.0.1:%d", sandboxtest.FreePort(t))
		cmd := exec.Command(bin, append([]string{"watch", "--valkey", sb.Addr(), "--netns", sb.NetNS, "--http", httpAddr}, args...)...)
		var stderr sandboxtest.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return httpAddr, &stderr
	}
	get := func(c *http.Client, url, user, pass, bearer string) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// waitServing polls until url answers at all (any status).
	waitServing := func(c *http.Client, url string, stderr *sandboxtest.Buffer) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := get(c, url, "", "", ""); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not answering within 20s; stderr:\n%s", url, stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	httpAddr, stderr := start("--web.config.file", cfg)
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := "https://" + httpAddr + "/metrics"
	waitServing(tlsClient, url, stderr)
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"alice", "s3cret-pw", 200}, {"alice", "wrong", 401}, {"", "", 401}} {
		if code, err := get(tlsClient, url, tc.user, tc.pass, ""); err != nil || code != tc.want {
			t.Errorf("user %q: status %d, %v; want %d", tc.user, code, err, tc.want)
		}
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if code, err := get(plain, "http://"+httpAddr+"/metrics", "alice", "s3cret-pw", ""); err == nil && code == 200 {
		t.Error("plain HTTP served /metrics with TLS configured")
	}

	// Both auth mechanisms at once: a usage error.
	out, err := exec.Command(bin, "watch", "--valkey", sb.Addr(), "--web.config.file", cfg, "--bearer-token-file", token).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitUsage {
		t.Errorf("both --web.config.file and --bearer-token-file: %v %s; want exit 2", err, out)
	}

	// The bearer token alone, as before.
	httpAddr, stderr = start("--bearer-token-file", token)
	url = "http://" + httpAddr + "/metrics"
	waitServing(plain, url, stderr)
	if code, err := get(plain, url, "", "", "tok-123"); err != nil || code != 200 {
		t.Errorf("bearer token: status %d, %v; want 200", code, err)
	}
	if code, err := get(plain, url, "", "", "nope"); err != nil || code != 401 {
		t.Errorf("wrong bearer token: status %d, %v; want 401", code, err)
	}
}
