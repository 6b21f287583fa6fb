package source

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

func TestIntegrationValkeyTLS(t *testing.T) {
	sandboxtest.Require(t)
	certs, err := sandbox.MakeCerts(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	const tlsPort = 6390
	sb := sandboxtest.New(t, sandbox.Options{ValkeyArgs: certs.ValkeyArgs(tlsPort, "no")})
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
		err := collectErr(s, 20*time.Second, func(err error) bool { return err != nil && strings.Contains(err.Error(), "TLS handshake") })
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "TLS handshake") || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("unverifiable certificate: %v; want a TLS handshake error naming the certificate", err)
		}
	})
	t.Run("plain text to the TLS port", func(t *testing.T) {
		tg := sbTarget(sb)
		tg.Addr.Port = tlsPort
		s := openTest(t, tg, defaultValkeyConfig())
		err := collectErr(s, 20*time.Second, func(err error) bool { return err != nil && strings.Contains(err.Error(), "valkeys://") })
		if err == nil || !strings.Contains(err.Error(), "valkeys://") {
			t.Fatalf("plain connection to a TLS port: %v; want a hint to use valkeys://", err)
		}
	})
}
