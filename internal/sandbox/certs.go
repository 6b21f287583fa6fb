package sandbox

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certs are PEM files of a private CA made for one run: the CA, a server
// certificate for the given names, and a client certificate (for
// tls-auth-clients yes), each with its key.
type Certs struct {
	CA                    string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

// ValkeyArgs are the valkey-server arguments that serve TLS on tlsPort
// with these certificates; authClients is tls-auth-clients (yes or no).
func (c Certs) ValkeyArgs(tlsPort int, authClients string) []string {
	return []string{"--tls-port", fmt.Sprint(tlsPort), "--tls-cert-file", c.ServerCert, "--tls-key-file", c.ServerKey,
		"--tls-ca-cert-file", c.CA, "--tls-auth-clients", authClients}
}

// MakeCerts writes a new private CA and certificates signed by it into
// dir. The server certificate is valid for hosts (IP addresses become IP
// SANs, anything else DNS SANs). Keys are ECDSA P-256, valid for a day.
func MakeCerts(dir string, hosts ...string) (Certs, error) {
	return makeCerts(dir, func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }, hosts)
}

// MakeCertsRSA is MakeCerts with RSA keys of the given size: the common
// server key whose handshake cost (one private-key signature per full
// handshake, ~1 ms at 2048 bits) a TLS reconnect storm multiplies.
func MakeCertsRSA(dir string, bits int, hosts ...string) (Certs, error) {
	return makeCerts(dir, func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, bits) }, hosts)
}

func makeCerts(dir string, newKey func() (crypto.Signer, error), hosts []string) (Certs, error) {
	now := time.Now()
	caKey, err := newKey()
	if err != nil {
		return Certs{}, fmt.Errorf("make CA key: %w", err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stormguard run CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return Certs{}, fmt.Errorf("make CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return Certs{}, err
	}
	var c Certs
	if c.CA, err = writePEM(dir, "ca.crt", "CERTIFICATE", caDER); err != nil {
		return Certs{}, err
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, hosts []string) (cert, key string, err error) {
		k, err := newKey()
		if err != nil {
			return "", "", err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, k.Public(), caKey)
		if err != nil {
			return "", "", fmt.Errorf("make %s certificate: %w", cn, err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return "", "", err
		}
		if cert, err = writePEM(dir, cn+".crt", "CERTIFICATE", der); err != nil {
			return "", "", err
		}
		key, err = writePEM(dir, cn+".key", "PRIVATE KEY", kder)
		return cert, key, err
	}
	if c.ServerCert, c.ServerKey, err = leaf(2, "server", x509.ExtKeyUsageServerAuth, hosts); err != nil {
		return Certs{}, err
	}
	if c.ClientCert, c.ClientKey, err = leaf(3, "client", x509.ExtKeyUsageClientAuth, nil); err != nil {
		return Certs{}, err
	}
	return c, nil
}

func writePEM(dir, name, typ string, der []byte) (string, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", p, err)
	}
	return p, nil
}
