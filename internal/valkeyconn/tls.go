package valkeyconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/stormguard/stormguard/internal/addr"
)

// TLSConfig returns the TLS settings for a, or nil for a plain address.
// The minimum version is TLS 1.2. The server is verified against the
// --cacert bundle when one is given (else the system roots), under the
// --sni name when given (else the address's host); ?insecure=1 skips
// verification (labs only). A --cert/--key pair is presented to servers
// that ask for a client certificate (tls-auth-clients yes). Files are read
// on every call, so a redial picks up rotated certificates.
func TLSConfig(a addr.Addr) (*tls.Config, error) {
	t := a.TLSFiles
	if !a.TLS {
		if t != (addr.TLSFiles{}) {
			return nil, errors.New("--cacert, --cert, --key and --sni need a TLS address (valkeys://HOST:PORT)")
		}
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         a.Host,
		InsecureSkipVerify: a.TLSInsecure, //nolint:gosec // only with ?insecure=1 (labs)
	}
	if t.SNI != "" {
		cfg.ServerName = t.SNI
	}
	if t.CACert != "" {
		pem, err := os.ReadFile(t.CACert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in the file", t.CACert)
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.Cert != "" && t.Key != "":
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case t.Cert != "":
		return nil, errors.New("--cert needs --key (the client certificate's private key)")
	case t.Key != "":
		return nil, errors.New("--key needs --cert (the client certificate)")
	}
	return cfg, nil
}
