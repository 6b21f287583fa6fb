//go:build linux

package lab

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
	"github.com/stormguard/stormguard/internal/source"
)

// TestIntegrationHostsAttribution: with Hosts 3, the instances' connections
// reach Valkey from the three hosts' addresses, and the agent's socket-dump
// attribution names their /24 prefixes.
func TestIntegrationHostsAttribution(t *testing.T) {
	sandboxtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := prepareRun(ctx, t, Config{Spawn: &Spawn{}, Hosts: 3, Clients: 6, Strategy: "immediate", Scenario: "kill"})
	if r.res.SourceAddrs != 3 || len(r.res.HostAddrs) != 3 {
		t.Fatalf("source_addrs %d, host_addrs %v", r.res.SourceAddrs, r.res.HostAddrs)
	}
	ap := netip.MustParseAddrPort(r.cfg.Target)
	set := source.Open(ctx, source.Options{Target: source.Target{Addr: addr.Addr{Host: ap.Addr().String(), Port: int(ap.Port())}, NetNS: r.cfg.NetNS}, ListenPoll: -1})
	defer set.Close()
	var tr source.PeerTracker
	ref, err := set.Peers(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	tr.Next(ref)

	// Instances 0..5: two each on hosts 0, 1, 2; each opens 1+k connections.
	want := map[string]int{}
	for k := 0; k < 6; k++ {
		dial := r.timedDial(k)
		for i := 0; i <= k; i++ {
			c, err := dial(ctx, "tcp", r.cfg.Target)
			if err != nil {
				t.Fatalf("instance %d: %v", k, err)
			}
			defer c.Close()
			rc := &rawConn{c: c, r: bufio.NewReader(c)}
			if err := rc.ping(5 * time.Second); err != nil {
				t.Fatalf("instance %d: PING over the link: %v", k, err)
			}
			want[fmt.Sprintf("10.77.%d.0/24", k%3+1)]++
		}
	}
	d, err := set.Peers(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	a := detect.Attribute(tr.Next(d).Addrs, 5)
	if a.Total != 21 || a.DistinctIPs != 3 || a.DistinctPrefixes != 3 {
		t.Fatalf("attribution %+v, want 21 connections from 3 addresses in 3 prefixes", a)
	}
	for _, p := range a.TopPrefixes {
		if want[p.Prefix] != p.Count {
			t.Errorf("prefix %s: %d connections, want %d (all: %v)", p.Prefix, p.Count, want[p.Prefix], want)
		}
	}
	// Valkey sees the same clients.
	list, err := r.adm.clientList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 3; k++ {
		if !strings.Contains(list, "addr=10.77."+strconv.Itoa(k+1)+".1:") {
			t.Errorf("CLIENT LIST has no client from host %d:\n%s", k, list)
		}
	}
	// No route out: a host cannot reach an address beyond the link.
	if _, err := r.hostDialers[0].from(netip.Addr{})(ctx, "tcp", "192.0.2.1:6379"); err == nil {
		t.Error("a client host reached 192.0.2.1: the hosts must have no route out")
	}
}

// TestIntegrationHostsKill runs a kill storm over two client hosts with 2%
// loss on their links and checks the fleet recovers and everything the run
// made is gone afterwards.
func TestIntegrationHostsKill(t *testing.T) {
	sandboxtest.Require(t)
	before := labNamespaces(t, os.Getpid())
	res := runLab(t, Config{Spawn: &Spawn{}, Hosts: 2, Loss: 2, Clients: 40, Strategy: "full-jitter", Scenario: "kill",
		Hold: 300 * time.Millisecond, Settle: 200 * time.Millisecond, Duration: 20 * time.Second})
	checkRecovered(t, res, 40)
	if res.Hosts != 2 || res.SourceAddrs != 2 || res.LossPercent != 2 || !strings.HasPrefix(res.Target, "spawned 10.77.0.1:") {
		t.Errorf("hosts %d, source_addrs %d, loss %g, target %q", res.Hosts, res.SourceAddrs, res.LossPercent, res.Target)
	}
	if after := labNamespaces(t, os.Getpid()); len(after) != len(before) {
		t.Errorf("namespaces left behind: before %v, after %v", before, after)
	}
}

// labNamespaces lists the sandbox namespaces process pid made.
func labNamespaces(t *testing.T, pid int) []string {
	t.Helper()
	m, err := filepath.Glob(fmt.Sprintf("/var/run/netns/sg-%d-*", pid))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// labProcs lists processes whose command line mentions pid's sandboxes
// (valkey-server's --dir is stormguard-sg-PID-N-…).
func labProcs(pid int) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), fmt.Sprintf("sg-%d-", pid)) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// childProcs are the process ids and names of pid's children (valkey-server
// renames its process title, so labProcs does not see the cluster's nodes).
func childProcs(pid int) map[string]string {
	out := map[string]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b)[i+1:])
		if i > 0 && len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out[e.Name()] = string(b)[strings.IndexByte(string(b), '(')+1 : i]
		}
	}
	return out
}

const interruptEnv = "STORMGUARD_LAB_INTERRUPT_HELPER"

// TestIntegrationInterruptHelper is the process TestIntegrationInterruptCleans
// interrupts: a storm over client hosts, run until SIGINT.
func TestIntegrationInterruptHelper(t *testing.T) {
	if os.Getenv(interruptEnv) == "" {
		t.Skip("helper process for TestIntegrationInterruptCleans")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	scenario, watched := strings.CutSuffix(os.Getenv(interruptEnv), "+watch")
	scenario, delayed := strings.CutSuffix(scenario, "+rtt")
	scenario, secure := strings.CutSuffix(scenario, "+tls")
	// Everything long, so that the interrupt lands while the scenario's
	// disruption is in force (blip's rule in, restart's server down) or
	// the fleet is being observed (kill).
	cfg := Config{Spawn: &Spawn{Down: time.Minute}, Hosts: 2, Clients: 20, Strategy: "immediate", Scenario: scenario,
		Hold: 200 * time.Millisecond, Blip: time.Minute, Stall: time.Minute, Settle: time.Minute, Duration: time.Minute, Progress: os.Stdout}
	if delayed {
		// The links' delay lines (TUN devices and relays where the
		// kernel has no netem) must go too.
		cfg.RTT, cfg.forceDelayLine = 2*time.Millisecond, true
	}
	if secure {
		// The run's certificates and ACL file (private directories)
		// must go too.
		cfg.TLS, cfg.Setup = true, "auth"
	}
	if scenario == "cluster" {
		// The cluster's five extra nodes must go too.
		cfg.Scenario, cfg.Cluster, cfg.Strategy, cfg.Hosts = "failover", true, "valkey-go", 0
	}
	if watched {
		// A watcher (storm --defuse auto's agent, in cmd) is stopped on
		// every path out of the run: its marker must be gone.
		cfg.Watch = func(ctx context.Context, s Server) (func() []AgentEvent, error) {
			dir := filepath.Join(os.TempDir(), fmt.Sprintf("stormguard-lab-watch-sg-%d-", os.Getpid()))
			if err := os.Mkdir(dir, 0o700); err != nil {
				return nil, err
			}
			return func() []AgentEvent { os.Remove(dir); return nil }, nil
		}
	}
	_, err := Run(ctx, cfg)
	fmt.Println("run ended:", err)
}

// TestIntegrationInterruptCleans: SIGINT during a run over client hosts
// leaves no namespace, process or address behind, for every scenario.
func TestIntegrationInterruptCleans(t *testing.T) {
	sandboxtest.Require(t)
	for _, sc := range []string{"kill", "blip", "restart", "slow", "failover", "churn", "kill+watch", "kill+rtt", "kill+tls", "cluster"} {
		t.Run(sc, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestIntegrationInterruptHelper$", "-test.v")
			// A private TMPDIR: every scratch directory the run makes
			// (the server's, certificates, ACL file, the watcher's
			// marker) goes there, and it must be empty afterwards.
			tmp := t.TempDir()
			cmd.Env = append(os.Environ(), interruptEnv+"="+sc, "TMPDIR="+tmp)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			lines := bufio.NewScanner(out)
			held := false
			var before []string
			for lines.Scan() {
				before = append(before, lines.Text())
				if strings.Contains(lines.Text(), "disrupted") {
					held = true
					break
				}
			}
			if !held {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("helper ended before its disruption:\n%s", strings.Join(before, "\n"))
			}
			if n := labNamespaces(t, pid); sc != "cluster" && len(n) != 3 {
				t.Errorf("during the run: namespaces %v, want the server's and 2 hosts'", n)
			}
			kids := childProcs(pid)
			if sc == "cluster" && len(kids) < 5 {
				t.Errorf("during the run: children %v, want the cluster's five extra nodes", kids)
			}
			if sc == "kill+rtt" && len(kids) < 2 {
				t.Errorf("during the run: children %v, want valkey-server and the delay line's relay", kids)
			}
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			var rest []string
			for lines.Scan() {
				rest = append(rest, lines.Text())
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("helper: %v\n%s", err, strings.Join(rest, "\n"))
			}
			if !strings.Contains(strings.Join(rest, "\n"), "run ended: context canceled") {
				t.Errorf("the run did not end on SIGINT:\n%s", strings.Join(rest, "\n"))
			}
			if n := labNamespaces(t, pid); len(n) != 0 {
				t.Errorf("namespaces left after SIGINT: %v", n)
			}
			if p := labProcs(pid); len(p) != 0 {
				t.Errorf("processes left after SIGINT: %v", p)
			}
			for k, name := range kids {
				// A zombie not yet reaped by init is gone too.
				b, err := os.ReadFile(filepath.Join("/proc", k, "stat"))
				if err == nil && !strings.Contains(string(b), ") Z ") {
					t.Errorf("child %s (%s) left after SIGINT", k, name)
				}
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				var names []string
				for _, e := range left {
					names = append(names, e.Name())
				}
				t.Errorf("scratch left after SIGINT (a stormguard-lab-watch-… marker: the watcher was not stopped): %v", names)
			}
			if b, _ := exec.Command("ip", "-o", "addr", "show").CombinedOutput(); strings.Contains(string(b), "10.77.") {
				t.Errorf("a 10.77.x address leaked into the host's namespace:\n%s", b)
			}
		})
	}
}

// TestIntegrationLinkLoss: with 50% loss each way on a host's link, a
// connect to a closed port is refused (SYN out and RST back both pass)
// about a quarter of the time and otherwise times out; without loss it is
// always refused.
// The same holds over links delayed by the user-space delay line.
func TestIntegrationLinkLoss(t *testing.T) {
	for _, link := range []sandbox.LinkOptions{{}, {RTT: 2 * time.Millisecond, DelayLine: true}} {
		t.Run(fmt.Sprintf("rtt=%s", link.RTT), func(t *testing.T) { testLinkLoss(t, link) })
	}
}

func testLinkLoss(t *testing.T, link sandbox.LinkOptions) {
	sb := sandboxtest.New(t, sandbox.Options{NoValkey: true})
	hosts, err := sb.AddHosts(context.Background(), 2, link)
	if err != nil {
		t.Fatal(err)
	}
	if err := linkLoss(hosts[0].NetNS, 50); err != nil {
		t.Fatal(err)
	}
	const n = 200
	target := netip.AddrPortFrom(sb.LinkAddr(), 1).String()
	refused := func(h sandbox.Host) int {
		d, err := newSourceDialer(h.NetNS, 32)
		if err != nil {
			t.Fatal(err)
		}
		defer d.close()
		// A fresh link may not pass packets at once (neighbour discovery,
		// bridge port coming up); on a loaded machine the first dials then
		// all time out. Wait until one connect is refused before counting.
		dial := func(timeout time.Duration) error {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			_, err := d.from(netip.Addr{})(ctx, "tcp", target)
			return err
		}
		ready := false
		for range 50 {
			if err := dial(time.Second); err != nil && strings.Contains(err.Error(), "refused") {
				ready = true
				break
			}
		}
		if !ready {
			t.Fatalf("host %s: no connect to the closed port was refused in 50 tries", h.NetNS)
		}
		res := make(chan error, n)
		for range n {
			go func() { res <- dial(900 * time.Millisecond) }() // below the 1 s SYN retransmit
		}
		got, other := 0, map[string]int{}
		for range n {
			if err := <-res; err != nil && strings.Contains(err.Error(), "refused") {
				got++
			} else {
				other[fmt.Sprint(err)]++
			}
		}
		if got != n {
			t.Logf("host %s: %d refused, others: %v", h.NetNS, got, other)
		}
		return got
	}
	if got := refused(hosts[1]); got != n {
		t.Errorf("lossless host: %d of %d connects refused, want all", got, n)
	}
	if got := refused(hosts[0]); got < n/20 || got > n*3/5 {
		t.Errorf("50%% loss each way: %d of %d connects refused, want about a quarter", got, n)
	}
}

// TestIntegrationHostsRTT: --rtt delays every host's link (netem where
// the kernel has it, the user-space delay line where it has not, and the
// delay line when asked for even where netem exists), so the median of a
// host's PING round trips is at least the RTT asked; and a whole run over
// such hosts reports the method and PING round trips of at least the RTT.
func TestIntegrationHostsRTT(t *testing.T) {
	sandboxtest.Require(t)
	const rtt = 20 * time.Millisecond
	medianPing := func(t *testing.T, r *run, host int) time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := r.timedDial(host)(ctx, "tcp", r.cfg.Target)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rc := &rawConn{c: c, r: bufio.NewReader(c)}
		var took []time.Duration
		for range 21 {
			start := time.Now()
			if err := rc.ping(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		return took[len(took)/2]
	}
	for _, forced := range []bool{false, true} {
		t.Run(fmt.Sprintf("delayline=%v", forced), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			r := prepareRun(ctx, t, Config{Spawn: &Spawn{}, Hosts: 2, RTT: rtt, Clients: 2, Strategy: "immediate", Scenario: "kill",
				forceDelayLine: forced})
			if r.rttMethod != sandbox.RTTNetem && r.rttMethod != sandbox.RTTDelayLine || forced && r.rttMethod != sandbox.RTTDelayLine {
				t.Fatalf("rtt method %q", r.rttMethod)
			}
			t.Logf("rtt by %s", r.rttMethod)
			for h := range 2 {
				if m := medianPing(t, r, h); m < rtt {
					t.Errorf("host %d: median PING over a %s link took %s", h, rtt, m)
				} else {
					t.Logf("host %d: median PING %s over a %s link", h, m, rtt)
				}
			}
		})
	}
	t.Run("run", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		res, err := Run(ctx, Config{Spawn: &Spawn{}, Hosts: 2, RTT: rtt, Loss: 1, Clients: 40, Strategy: "immediate", Scenario: "kill",
			Hold: time.Second, Duration: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if res.RTTMS == nil || *res.RTTMS != 20 || res.RTTMethod == nil || res.LossPercent != 1 {
			t.Fatalf("rtt_ms %v, rtt_method %v, loss_percent %v", res.RTTMS, res.RTTMethod, res.LossPercent)
		}
		if res.PingRTTP50MS == nil || *res.PingRTTP50MS < 20 {
			t.Errorf("ping_rtt_p50_ms %v over a 20 ms link", res.PingRTTP50MS)
		}
		if !res.Recovered || res.RecoveredClients != 40 {
			t.Errorf("recovered %v (%d of 40 clients)", res.Recovered, res.RecoveredClients)
		}
		t.Logf("rtt by %s: ping p50 %.2f ms, p99 %v ms", *res.RTTMethod, *res.PingRTTP50MS, *res.PingRTTP99MS)
	})
}
