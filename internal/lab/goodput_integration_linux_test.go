//go:build linux

package lab

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// cpusAllowed reads a task's Cpus_allowed_list.
func cpusAllowed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Cpus_allowed_list in %s", path)
	return ""
}

// TestIntegrationServerCPUs: valkey-server runs on the listed CPU, the
// run's threads on the other, and the process gets its CPUs back after.
func TestIntegrationServerCPUs(t *testing.T) {
	sandboxtest.Require(t)
	online, err := allowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(online) < 2 {
		t.Fatalf("this test needs two CPUs, the process may use %v", online)
	}
	before := cpusAllowed(t, "/proc/self/status")
	server := strconv.Itoa(online[len(online)-1])
	r, err := newRun(Config{Spawn: &Spawn{ServerCPUs: server}, Clients: 1, Strategy: "immediate", Scenario: "kill"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.prepare(context.Background()); err != nil {
		r.close()
		t.Fatal(err)
	}
	got := cpusAllowed(t, "/proc/"+strconv.Itoa(r.sb.ValkeyPID())+"/status")
	mine := cpusAllowed(t, "/proc/thread-self/status")
	r.close()
	if got != server {
		t.Errorf("valkey-server may run on %s, want %s", got, server)
	}
	if m, err := parseCPUList(mine); err != nil || !slices.Equal(m, online[:len(online)-1]) {
		t.Errorf("the clients' thread may run on %s, want %v (server %s)", mine, online[:len(online)-1], server)
	}
	if after := cpusAllowed(t, "/proc/self/status"); after != before {
		t.Errorf("CPU affinity after the run %s, before %s", after, before)
	}
	if r.res.ServerCPUs != server {
		t.Errorf("server_cpus %q", r.res.ServerCPUs)
	}
}

// TestIntegrationGoodput: a kill storm's result has the goodput keys: a
// positive rate before, a dip, recovery by completed commands, a timeline
// that covers the run and the server's CPU.
func TestIntegrationGoodput(t *testing.T) {
	const clients = 50
	res := runLab(t, Config{Spawn: &Spawn{}, Clients: clients, Strategy: "immediate", Scenario: "kill",
		Hold: 1500 * time.Millisecond, Settle: 1500 * time.Millisecond, Duration: 20 * time.Second})
	if !res.Recovered || res.TimeToRecoverMS == nil {
		t.Fatalf("recovered %v, time_to_recover_ms %v", res.Recovered, deref(res.TimeToRecoverMS))
	}
	if res.GoodputBefore == nil || *res.GoodputBefore <= 0 {
		t.Fatalf("goodput_before %v", res.GoodputBefore)
	}
	if res.GoodputMinRatio == nil || res.GoodputEndRatio == nil || *res.GoodputMinRatio > *res.GoodputEndRatio {
		t.Errorf("goodput min %v, end %v", res.GoodputMinRatio, res.GoodputEndRatio)
	}
	if res.ServerCPUPercent == nil || *res.ServerCPUPercent <= 0 {
		t.Errorf("server_cpu_percent %v (errors %v)", res.ServerCPUPercent, res.Errors)
	}
	var before, after, failed, connects int64
	for _, p := range res.TimelinePoints {
		if p.TMS < 0 {
			before += p.OKCommands
		} else {
			after += p.OKCommands
		}
		failed += p.FailedCommands
		connects += p.Connects
	}
	if len(res.TimelinePoints) < 10 || res.TimelinePoints[0].TMS > -900 || before == 0 || after == 0 {
		t.Errorf("timeline of %d buckets from %d ms: %d ok before, %d after", len(res.TimelinePoints),
			res.TimelinePoints[0].TMS, before, after)
	}
	if failed < clients || connects < clients {
		t.Errorf("timeline shows %d failed commands and %d connects for %d killed clients", failed, connects, clients)
	}
}

// TestIntegrationSpawnQueue: a spawned server's result says the accept
// queue it ran with (somaxconn as its namespace has it, tcp-backlog as
// passed or Valkey's default), which simulate --calibrate fits with.
func TestIntegrationSpawnQueue(t *testing.T) {
	sandboxtest.Require(t)
	for _, tc := range []struct {
		name                  string
		spawn                 Spawn
		somaxconn, tcpBacklog int
	}{
		{"set", Spawn{Somaxconn: 64, TCPBacklog: 100}, 64, 100},
		{"valkey default backlog", Spawn{Somaxconn: 128}, 128, valkeyTCPBacklog},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := tc.spawn
			r, err := newRun(Config{Spawn: &sp, Clients: 1, Strategy: "immediate", Scenario: "kill"})
			if err != nil {
				t.Fatal(err)
			}
			defer r.close()
			if err := r.prepare(context.Background()); err != nil {
				t.Fatal(err)
			}
			if r.res.Somaxconn == nil || *r.res.Somaxconn != tc.somaxconn || r.res.TCPBacklog == nil || *r.res.TCPBacklog != tc.tcpBacklog {
				t.Errorf("somaxconn %v, tcp_backlog %v; want %d, %d", deref(r.res.Somaxconn), deref(r.res.TCPBacklog), tc.somaxconn, tc.tcpBacklog)
			}
		})
	}
}
