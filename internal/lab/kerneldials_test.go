package lab

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/procnet"
)

// snmpText is /proc/net/snmp's Tcp section (6.x layout: MaxConn is -1).
func snmpText(opens, fails uint64) string {
	return fmt.Sprintf("Ip: Forwarding DefaultTTL\nIp: 1 64\n"+
		"Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab\n"+
		"Tcp: 1 200 120000 -1 %d 7 %d 0 3\n", opens, fails)
}

// fakeSNMP is a tcpSNMP over a regular file the test rewrites, standing
// in for /proc/net/snmp (procnet.Files reads a path in the own namespace
// afresh each time).
func fakeSNMP(t *testing.T, text string) (*tcpSNMP, func(string)) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "snmp")
	write := func(s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(text)
	s := &tcpSNMP{files: []*procnet.Files{procnet.NewFiles("", []string{p})}}
	t.Cleanup(s.close)
	return s, write
}

// TestKernelDials: each sample adds the growth of ActiveOpens minus the
// admin connection's dials to the attempts and the timeline, and the
// growth of AttemptFails to the failures.
func TestKernelDials(t *testing.T) {
	snmp, write := fakeSNMP(t, snmpText(1000, 50))
	rec := newRecorder(10, time.Minute)
	var admin atomic.Int64
	admin.Store(3) // dials before the counter started are not subtracted again
	k, err := newKernelDials(snmp, rec, admin.Load)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		opens, fails uint64
		adminDials   int64
		wantDials    int64
		wantFails    int64
	}{
		{1000, 50, 0, 0, 0},  // nothing happened
		{1040, 52, 0, 40, 2}, // 40 client connects, 2 failed
		{1045, 52, 2, 43, 2}, // 5 connects of which 2 were the admin connection's
		{1045, 60, 0, 43, 10},
		{1045, 60, 1, 43, 10}, // an admin dial counted before its SYN …
		{1046, 60, 0, 43, 10}, // … reached the kernel: never below zero
		{1050, 60, 0, 47, 10},
	}
	for i, s := range steps {
		admin.Add(s.adminDials)
		write(snmpText(s.opens, s.fails))
		k.sample()
		if got := rec.dials.Load(); got != s.wantDials {
			t.Errorf("step %d: dials %d, want %d", i, got, s.wantDials)
		}
		if got := rec.dialFails.Load(); got != s.wantFails {
			t.Errorf("step %d: failures %d, want %d", i, got, s.wantFails)
		}
	}
	var sum int64
	for _, v := range rec.timelineFrom(0, rec.since(time.Now())) {
		sum += v
	}
	if sum != 47 {
		t.Errorf("timeline holds %d dials, want 47", sum)
	}
	if err := k.failure(); err != nil {
		t.Errorf("failure() = %v after good samples", err)
	}
}

// TestKernelDialsBadFile: a file without the Tcp counters is an error at
// the start, and a read error later is kept (the first one) and reported.
func TestKernelDialsBadFile(t *testing.T) {
	tests := []struct{ name, text string }{
		{"no Tcp section", "Ip: Forwarding\nIp: 1\n"},
		{"no AttemptFails", "Tcp: ActiveOpens PassiveOpens\nTcp: 1 2\n"},
		{"damaged", "Tcp: ActiveOpens AttemptFails\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snmp, _ := fakeSNMP(t, tt.text)
			if _, err := newKernelDials(snmp, newRecorder(1, time.Minute), func() int64 { return 0 }); err == nil {
				t.Fatal("no error")
			}
		})
	}
	snmp, write := fakeSNMP(t, snmpText(1, 1))
	rec := newRecorder(1, time.Minute)
	k, err := newKernelDials(snmp, rec, func() int64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	write("Tcp: ActiveOpens\n")
	k.sample()
	write(snmpText(5, 1))
	k.sample()
	if k.failure() == nil {
		t.Error("a failed sample was not reported")
	}
	if rec.dials.Load() != 4 {
		t.Errorf("dials %d after recovering, want 4", rec.dials.Load())
	}
	snmp.close()
	if _, err := snmp.read(); err == nil {
		t.Error("read after close succeeded")
	}
}

func TestGlideAvailableStrategies(t *testing.T) {
	got, all := AvailableStrategies(), Strategies()
	if GLIDEBuiltIn() {
		if len(got) != len(all) {
			t.Fatalf("glide built in, yet available %v of %v", got, all)
		}
	} else if len(got) != len(all)-1 || got[len(got)-1] == GLIDEStrategy {
		t.Fatalf("available %v without glide", got)
	}
	if all[len(all)-1] != GLIDEStrategy {
		t.Errorf("%s is not last in the comparison order: %v", GLIDEStrategy, all)
	}
	want := []string{"immediate", "fixed", "glide", "full-jitter", "equal-jitter", "decorrelated",
		"stormguard", "pool-unbounded", "go-redis", "valkey-go", RedisPyStrategy, GLIDEStrategy}
	if !slices.Equal(all, want) {
		t.Errorf("Strategies() = %v, want %v", all, want)
	}
}

// TestGlideValidate: without the build tag the strategy is refused with
// ErrNotBuiltIn naming make build-glide; with it, it needs a namespace.
func TestGlideValidate(t *testing.T) {
	c := Config{Target: "127.0.0.1:6379", Clients: 10, Strategy: GLIDEStrategy, Scenario: "kill"}.withDefaults()
	err := c.Validate()
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("no namespace: err = %v, want ErrConfig", err)
	}
	if GLIDEBuiltIn() {
		if errors.Is(err, ErrNotBuiltIn) || !strings.Contains(err.Error(), "NetNS") {
			t.Errorf("built in, no namespace: %v", err)
		}
		c.NetNS = "/var/run/netns/x"
		if err := c.Validate(); err != nil {
			t.Errorf("built in, with namespace: %v", err)
		}
		// TLS, client hosts and the cluster run with the lab's own
		// server; an outside TLS server's CA is no PEM GLIDE can take.
		for _, ok := range []Config{
			{Spawn: &Spawn{}, TLS: true, Hosts: 2, Setup: "auth", Clients: 10, Strategy: GLIDEStrategy, Scenario: "kill"},
			{Spawn: &Spawn{}, TLS: true, Hosts: 2, Clients: 10, Strategy: GLIDEStrategy, Scenario: "failover"},
			{Spawn: &Spawn{}, Cluster: true, Clients: 10, Strategy: GLIDEStrategy, Scenario: "failover"},
		} {
			if err := ok.withDefaults().Validate(); err != nil {
				t.Errorf("built in, %+v: %v", ok, err)
			}
		}
		c.TLS, c.TLSConfig = true, &tls.Config{}
		if err := c.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "Spawn") {
			t.Errorf("built in, TLS to an outside server: err = %v, want a refusal naming Spawn", err)
		}
		return
	}
	if !errors.Is(err, ErrNotBuiltIn) || !strings.Contains(err.Error(), "make build-glide") {
		t.Errorf("not built in: err = %v", err)
	}
	c.NetNS = "/var/run/netns/x"
	if err := c.Validate(); !errors.Is(err, ErrNotBuiltIn) {
		t.Errorf("not built in, with namespace: err = %v", err)
	}
}
