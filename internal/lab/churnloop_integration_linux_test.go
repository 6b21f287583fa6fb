//go:build linux

package lab

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestIntegrationChurnLoop: the churn scenario's event loop makes real
// connections, one per PING, as valkey-benchmark -k 0 does. Every
// connection it counts is one Valkey accepted; each closes with a FIN,
// not a reset, so the client side keeps the TIME_WAIT; and each
// instance connects from its own source address (one with
// SourceAddrs 1).
func TestIntegrationChurnLoop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const clients = 20
	for _, tt := range []struct{ sources, wantAddrs int }{{0, clients}, {1, 1}} {
		// A namespace each: the TIME_WAITs counted below must be this
		// run's.
		sb := newServer(t, 4096)
		c := Config{Target: sb.Addr(), NetNS: sb.NetNS, Clients: clients, SourceAddrs: tt.sources,
			Strategy: "immediate", Scenario: "churn", Duration: time.Second}
		if r := prepareRun(ctx, t, c); !r.loopChurn() {
			t.Fatal("a plaintext churn without setup does not take the event loop")
		}
		snmp, err := openTCPSNMP(sb.NetNS)
		if err != nil {
			t.Fatal(err)
		}
		before, err := snmp.read()
		if err != nil {
			t.Fatal(err)
		}
		res := runLab(t, c)
		after, err := snmp.read()
		snmp.close()
		if err != nil {
			t.Fatal(err)
		}
		if res.ConnectAttempts < 10*clients || res.ConnectFailures != 0 || res.FailedCommands != 0 {
			t.Errorf("sources %d: %d connects, %d failed, %d failed PINGs", tt.sources, res.ConnectAttempts,
				res.ConnectFailures, res.FailedCommands)
		}
		// Valkey's count agrees: the lab reads it and its own a few round
		// trips apart at the baseline and the end, while connections go
		// on at thousands per second, hence the 5%.
		if res.ConnectionsReceived == nil {
			t.Fatalf("no total_connections_received: %v", res.Errors)
		}
		if d := int64(*res.ConnectionsReceived) - res.ConnectAttempts; d < -res.ConnectAttempts/20 || d > res.ConnectAttempts/20 {
			t.Errorf("sources %d: the lab counted %d connects, Valkey accepted %d", tt.sources,
				res.ConnectAttempts, *res.ConnectionsReceived)
		}
		// A reset is sent only by a socket closed with a reply unread,
		// which happens at most once per client, when the run ends.
		if rst := after["OutRsts"] - before["OutRsts"]; rst > clients {
			t.Errorf("sources %d: %d resets for %d connections (FIN expected)", tt.sources, rst, res.ConnectAttempts)
		}
		out, err := sb.Command(ctx, "ss", "-Htn", "state", "time-wait").CombinedOutput()
		if err != nil {
			t.Fatalf("ss: %v: %s", err, out)
		}
		addrs := map[string]bool{}
		waits := 0
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			for i := 1; i < len(f); i++ {
				if f[i] == sb.Addr() {
					// Local address:port before the peer; the
					// server's side (peer first) is not ours.
					host, _, _ := strings.Cut(f[i-1], ":")
					addrs[host] = true
					waits++
				}
			}
		}
		if waits < int(res.ConnectAttempts)/2 {
			t.Errorf("sources %d: %d client-side TIME_WAITs after %d connections", tt.sources, waits, res.ConnectAttempts)
		}
		if len(addrs) != tt.wantAddrs {
			t.Errorf("sources %d: connections came from %d addresses, want %d", tt.sources, len(addrs), tt.wantAddrs)
		}
	}
}

// stallOnDisrupt is a Progress writer that stalls the server (SIGSTOP)
// for d once the run reports its disruption: in churn, right after the
// warm-up.
type stallOnDisrupt struct {
	t    *testing.T
	sb   interface{ Signal(syscall.Signal) error }
	d    time.Duration
	once sync.Once
	done chan struct{}
}

func (s *stallOnDisrupt) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "disrupted") {
		s.once.Do(func() {
			go func() {
				defer close(s.done)
				if err := s.sb.Signal(syscall.SIGSTOP); err != nil {
					s.t.Error(err)
					return
				}
				time.Sleep(s.d)
				if err := s.sb.Signal(syscall.SIGCONT); err != nil {
					s.t.Error(err)
				}
			}()
		})
	}
	return len(p), nil
}

// TestIntegrationChurnLoopStall: while the server is stopped, the loop's
// PINGs time out and count as failed commands; its clients reconnect and
// the churn goes on once the server runs again.
func TestIntegrationChurnLoopStall(t *testing.T) {
	sb := newServer(t, 4096)
	const clients = 10
	stall := &stallOnDisrupt{t: t, sb: sb, d: time.Second, done: make(chan struct{})}
	res := runLab(t, Config{Target: sb.Addr(), NetNS: sb.NetNS, Clients: clients, Strategy: "immediate",
		Scenario: "churn", Duration: 3 * time.Second, CommandTimeout: 200 * time.Millisecond, Progress: stall})
	select {
	case <-stall.done:
	default:
		t.Fatal("the run never reported its disruption: no stall")
	}
	if res.FailedCommands < clients {
		t.Errorf("%d failed PINGs while the server was stopped, want at least one per client", res.FailedCommands)
	}
	// The stall ended before the run did: the last half second has
	// connections again.
	tl := res.Timeline
	var tail int64
	for _, n := range tl[max(len(tl)-5, 0):] {
		tail += n
	}
	if tail == 0 {
		t.Errorf("no connections in the run's last half second after the stall: timeline %v", tl)
	}
}
