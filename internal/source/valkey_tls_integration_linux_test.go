package source

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// writeSelfSigned writes a throwaway CA-signed server certificate for
// 127.0.0.1 and returns the cert, key and CA paths.
func writeSelfSigned(t *testing.T) (cert, key, ca string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stormguard test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	caCert, _ := x509.ParseCertificate(caDER)
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("server.crt", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER), write("ca.crt", "CERTIFICATE", caDER)
}

func TestIntegrationValkeyTLS(t *testing.T) {
	sandboxtest.Require(t)
	cert, key, ca := writeSelfSigned(t)
	const tlsPort = 6390
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: []string{
		"--tls-port", "6390", "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"}})
	tlsTarget := func(insecure bool) Target {
		tg := sbTarget(sb)
		tg.Addr.Port, tg.Addr.TLS, tg.Addr.TLSInsecure = tlsPort, true, insecure
		return tg
	}

	t.Run("valkeys insecure", func(t *testing.T) {
		s := openTest(t, tlsTarget(true), defaultValkeyConfig())
		for i := 0; i < 5; i++ {
			v := mustCollect(t, s, 5*time.Second)
			if v.ConnectedClients == nil || v.PingMS == nil {
				t.Fatalf("fields missing over TLS: %+v", v)
			}
		}
		cl := clientList(t, sb, clientName)
		if len(cl) != 1 || !strings.HasSuffix(cl[0]["laddr"], ":6390") {
			t.Fatalf("CLIENT LIST %v; want one connection on the TLS port", cl)
		}
	})
	t.Run("unknown CA", func(t *testing.T) {
		s := openTest(t, tlsTarget(false), defaultValkeyConfig())
		_, err, _ := collect(s, 500*time.Millisecond)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "TLS handshake") || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("unverifiable certificate: %v; want a TLS handshake error naming the certificate", err)
		}
	})
	t.Run("plain text to the TLS port", func(t *testing.T) {
		tg := sbTarget(sb)
		tg.Addr.Port = tlsPort
		s := openTest(t, tg, defaultValkeyConfig())
		_, err, _ := collect(s, 500*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "valkeys://") {
			t.Fatalf("plain connection to a TLS port: %v; want a hint to use valkeys://", err)
		}
	})
}
