package valkeyconn

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/sandbox"
)

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	certs, err := sandbox.MakeCerts(dir, "valkey.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsAddr := func(f addr.TLSFiles) addr.Addr {
		return addr.Addr{Host: "127.0.0.1", Port: 6390, TLS: true, TLSFiles: f}
	}
	t.Run("plain", func(t *testing.T) {
		if cfg, err := TLSConfig(addr.Addr{Host: "h", Port: 1}); cfg != nil || err != nil {
			t.Fatalf("plain address: %v, %v; want nil, nil", cfg, err)
		}
	})
	t.Run("full", func(t *testing.T) {
		cfg, err := TLSConfig(tlsAddr(addr.TLSFiles{CACert: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey, SNI: "valkey.test"}))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != "valkey.test" || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.InsecureSkipVerify {
			t.Fatalf("config %+v", cfg)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		cfg, err := TLSConfig(tlsAddr(addr.TLSFiles{}))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != "127.0.0.1" || cfg.RootCAs != nil || len(cfg.Certificates) != 0 {
			t.Fatalf("config %+v", cfg)
		}
	})
	bad := []struct {
		name string
		a    addr.Addr
		want string
	}{
		{"files on a plain address", addr.Addr{Host: "h", Port: 1, TLSFiles: addr.TLSFiles{CACert: certs.CA}}, "need a TLS address"},
		{"missing CA file", tlsAddr(addr.TLSFiles{CACert: filepath.Join(dir, "nope")}), "--cacert"},
		{"CA not PEM", tlsAddr(addr.TLSFiles{CACert: notPEM}), "no PEM certificate"},
		{"cert without key", tlsAddr(addr.TLSFiles{Cert: certs.ClientCert}), "--cert needs --key"},
		{"key without cert", tlsAddr(addr.TLSFiles{Key: certs.ClientKey}), "--key needs --cert"},
		{"key of another cert", tlsAddr(addr.TLSFiles{Cert: certs.ClientCert, Key: certs.ServerKey}), "--cert/--key"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := TLSConfig(tt.a)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err %v; want one line containing %q", err, tt.want)
			}
		})
	}
}
