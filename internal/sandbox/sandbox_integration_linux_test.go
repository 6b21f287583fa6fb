package sandbox_test

import (
	"context"
	"os"
	"testing"

	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

func TestIntegrationSandbox(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{
		Sysctls:    map[string]string{"net.core.somaxconn": "64", "net.ipv4.tcp_syncookies": "0"},
		ValkeyArgs: []string{"--maxclients", "50"},
	})
	if v, err := sb.Sysctl("net.core.somaxconn"); err != nil || v != "64" {
		t.Fatalf("somaxconn in sandbox = %q, %v; want 64", v, err)
	}
	host, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		t.Fatal(err)
	}
	if string(host) == "64\n" {
		t.Log("host somaxconn happens to be 64; isolation not proven by this value")
	}
	if err := sb.Ping(context.Background()); err != nil {
		t.Fatalf("PING inside sandbox: %v", err)
	}
	out, err := sb.Command(context.Background(), "valkey-cli", "-p", "6379", "CONFIG", "GET", "maxclients").CombinedOutput()
	if err != nil {
		t.Fatalf("valkey-cli in namespace: %v %s", err, out)
	}
	if want := "maxclients\n50\n"; string(out) != want {
		t.Fatalf("CONFIG GET maxclients = %q, want %q", out, want)
	}
	ns := sb.NetNS
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ns); !os.IsNotExist(err) {
		t.Fatalf("namespace %s still exists after Close: %v", ns, err)
	}
}
