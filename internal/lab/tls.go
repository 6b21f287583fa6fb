package lab

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// runTLS is the TLS material made for one run: a CA, and a server
// certificate it signed, for the lab's own valkey-server.
type runTLS struct {
	dir           string // 0700, removed with the run
	ca, cert, key string // PEM files
	client        *tls.Config
	serverName    string
}

// tlsServerName is the name in the run's server certificate.
const tlsServerName = "valkey.stormguard-lab"

// makeRunTLS writes a fresh CA and a server certificate for addrs (and
// tlsServerName) into a private directory. The server key is RSA 2048, the
// common size whose handshake cost a storm multiplies.
func makeRunTLS(addrs []netip.Addr) (*runTLS, error) {
	dir, err := os.MkdirTemp("", "stormguard-lab-tls-")
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	t := &runTLS{dir: dir, ca: filepath.Join(dir, "ca.crt"), cert: filepath.Join(dir, "server.crt"),
		key: filepath.Join(dir, "server.key"), serverName: tlsServerName}
	if err := t.write(addrs); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("TLS certificates for the run: %w", err)
	}
	return t, nil
}

func (t *runTLS) close() { os.RemoveAll(t.dir) }

func (t *runTLS) write(addrs []netip.Addr) error {
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stormguard lab CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	srvKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: tlsServerName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		DNSNames: []string{tlsServerName}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		// Client auth too: cluster nodes present it to each other on
		// the TLS cluster bus, which checks it even with
		// tls-auth-clients no ("unsupported certificate" otherwise).
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, a := range addrs {
		srvTmpl.IPAddresses = append(srvTmpl.IPAddresses, net.IP(a.AsSlice()))
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	files := []struct {
		path, kind string
		der        []byte
	}{
		{t.ca, "CERTIFICATE", caDER}, {t.cert, "CERTIFICATE", srvDER},
		{t.key, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(srvKey)},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der}), 0o600); err != nil {
			return err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	t.client = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: tlsServerName}
	return nil
}

// valkeyArgs makes valkey-server serve TLS only, on port.
func (t *runTLS) valkeyArgs(port int) []string {
	return []string{"--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", t.cert, "--tls-key-file", t.key, "--tls-ca-cert-file", t.ca,
		// The run's clients verify the server; they present no
		// certificate (not every library the lab runs can).
		"--tls-auth-clients", "no"}
}

// withTLS wraps dial with the TLS client handshake (within the dial's
// context, so a connect timeout covers both); nil cfg returns dial.
func withTLS(dial DialFunc, cfg *tls.Config) DialFunc {
	if cfg == nil {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return valkeyconn.HandshakeTLS(ctx, c, cfg)
	}
}
