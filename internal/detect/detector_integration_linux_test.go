//go:build linux

package detect

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// readSNMP reads one "Prefix: names / Prefix: values" pair file into a map.
// A deliberately small reader for this test; the real source lives in
// internal/source.
func readSNMP(t *testing.T, path string, out map[string]uint64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var names []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		if names == nil || names[0] != fields[0] {
			names = fields
			continue
		}
		for i := 1; i < len(fields) && i < len(names); i++ {
			if v, err := strconv.ParseUint(fields[i], 10, 64); err == nil {
				out[strings.TrimSuffix(names[0], ":")+"."+names[i]] = v
			}
		}
		names = nil
	}
}

// kernelSample builds a Sample from the namespace's real counters and the
// real accept queue of the port (ss inside the namespace).
func kernelSample(t *testing.T, sb *sandbox.Sandbox, pid int) *sample.Sample {
	t.Helper()
	c := map[string]uint64{}
	readSNMP(t, fmt.Sprintf("/proc/%d/net/netstat", pid), c)
	readSNMP(t, fmt.Sprintf("/proc/%d/net/snmp", pid), c)
	s := &sample.Sample{Time: time.Now(), Target: sb.Addr(), Port: sb.Port, Errors: map[string]string{"valkey": "not read in this test"}}
	get := func(k string) *uint64 {
		if v, ok := c[k]; ok {
			return sample.U64(v)
		}
		return nil
	}
	s.TCP = &sample.TCP{
		ListenOverflows: get("TcpExt.ListenOverflows"), ListenDrops: get("TcpExt.ListenDrops"),
		ReqQFullDrop: get("TcpExt.TCPReqQFullDrop"), ReqQFullDoCookies: get("TcpExt.TCPReqQFullDoCookies"),
		PassiveOpens: get("Tcp.PassiveOpens"), AttemptFails: get("Tcp.AttemptFails"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := sb.Command(ctx, "ss", "-Hltn", fmt.Sprintf("sport = :%d", sb.Port)).Output()
	if err != nil {
		t.Fatalf("ss in namespace: %v", err)
	}
	// "LISTEN <Recv-Q = depth> <Send-Q = limit> local peer"
	if f := strings.Fields(string(out)); len(f) >= 3 {
		depth, err1 := strconv.ParseUint(f[1], 10, 64)
		limit, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 == nil && err2 == nil {
			s.Listen = &sample.Listen{Depth: sample.U64(depth), DepthMax: sample.U64(depth), Limit: sample.U64(limit), Sockets: 1, Polls: 1}
		}
	}
	return s
}

// TestIntegrationDetectorRealAcceptOverflow freezes a real valkey-server
// (SIGSTOP: it stops accepting), fills its accept queue from real clients
// until the kernel counts ListenOverflows, and checks that the detector
// calls a storm with per-port evidence, then recovering and calm once
// Valkey accepts again.
func TestIntegrationDetectorRealAcceptOverflow(t *testing.T) {
	sb := sandboxtest.New(t, sandbox.Options{
		Sysctls:    map[string]string{"net.core.somaxconn": "16", "net.ipv4.tcp_syncookies": "1"},
		ValkeyArgs: []string{"--tcp-backlog", "16"},
	})
	pid := sb.ValkeyPID()
	d := New(Config{StormQuiet: time.Second, CalmQuiet: 3 * time.Second, SurgeQuiet: time.Second})
	var evs []Event
	observe := func() {
		_, ev := d.Observe(kernelSample(t, sb, pid))
		evs = append(evs, ev...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Calm: a few short connections.
	for i := 0; i < 6; i++ {
		if c, err := sb.Dial(ctx); err == nil {
			c.Close()
		}
		observe()
		time.Sleep(200 * time.Millisecond)
	}
	if st, _ := d.State(); st != Calm {
		t.Fatalf("calm phase ended in %v: %v", st, transitions(evs))
	}

	// Storm: Valkey frozen, 120 clients dial (bounded, 2 s dial timeout).
	thaw := sandboxtest.Freeze(t, sb)
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	for i := 0; i < 120; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, err := sb.Dial(ctx); err == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		observe()
		if st, _ := d.State(); st == Storm {
			break
		}
	}
	thaw()
	wg.Wait()
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()

	i := slices.IndexFunc(evs, func(e Event) bool { return e.To == Storm })
	if i < 0 {
		t.Fatalf("no storm event; transitions %v; last view %+v", transitions(evs), d.View())
	}
	storm := evs[i]
	t.Logf("storm verdict: %s", storm.Verdict)
	if !storm.Evidence.AttributedToPort || !slices.Contains(storm.Evidence.PerPort, "accept_queue_full") {
		t.Errorf("storm not attributed to the port's own accept queue: per_port %v namespace_wide %v",
			storm.Evidence.PerPort, storm.Evidence.NamespaceWide)
	}
	if !strings.Contains(storm.Verdict, "accept queue full (") {
		t.Errorf("verdict %q does not name the full accept queue", storm.Verdict)
	}

	// Recovery: Valkey drains the queue; no more drops.
	deadline = time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		observe()
		if st, _ := d.State(); st == Calm {
			break
		}
	}
	got := transitions(evs[i:])
	if len(got) < 3 || got[len(got)-2] != "storm->recovering" || got[len(got)-1] != "recovering->calm" {
		t.Fatalf("after thaw: transitions %v, want … storm->recovering, recovering->calm", got)
	}
}
