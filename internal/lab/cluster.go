package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valkey-io/valkey-go"
)

// The failover scenario's cluster (Config.Cluster): the lab's own server
// on 6379 and clusterPorts, all in the server's namespace. valkey-cli
// --cluster create makes the first three primaries (6379 gets slots
// 0-5460) and the other three their replicas.
var clusterPorts = []int{7001, 7002, 7003, 7004, 7005}

// clusterNodeTimeout is the nodes' cluster-node-timeout from the moment
// the cluster is up: short, so that the cluster fails over within seconds
// of the kill. While the cluster forms the nodes run with
// clusterFormTimeout instead: once under CI load a one-second timeout
// throughout left the create unfinished after a minute (most likely nodes
// marking each other failing while valkey-cli waited for them to agree),
// and a short timeout buys nothing before the kill.
const (
	clusterNodeTimeout = "1000"
	clusterFormTimeout = "15000"
)

// clusterKey is the key every cluster client reads. Its hash tag {bar}
// maps to slot 5061, in the killed primary's (6379's) range, so every
// client depends on the failover; startCluster checks that 6379 serves it.
const clusterKey = "stormguard-lab:{bar}"

// clusterTLSArgs make a TLS-only node speak TLS on the cluster bus and to
// its primary too.
var clusterTLSArgs = []string{"--tls-cluster", "yes", "--tls-replication", "yes"}

// clusterHost is the address every node is known by in the cluster (and
// announces to clients in CLUSTER SLOTS): loopback, or with client hosts
// Valkey's address on their link, which the hosts can reach.
func (r *run) clusterHost() string {
	if r.cfg.Hosts > 0 {
		return r.sb.LinkAddr().String()
	}
	return "127.0.0.1"
}

// clusterArgs are the cluster settings of one node on port.
func clusterArgs(dir string, port int) []string {
	return []string{"--cluster-enabled", "yes", "--cluster-node-timeout", clusterFormTimeout,
		"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port))}
}

// startCluster starts the five other nodes next to the lab's server,
// joins the six into a cluster with valkey-cli, and waits until the
// replica of the server (the primary to be killed) is in sync.
func (r *run) startCluster(ctx context.Context) error {
	_, port, _ := net.SplitHostPort(r.cfg.Target)
	host := r.clusterHost()
	nodes := []string{net.JoinHostPort(host, port)}
	for _, p := range clusterPorts {
		if err := r.startClusterNode(ctx, p); err != nil {
			return err
		}
		nodes = append(nodes, net.JoinHostPort(host, strconv.Itoa(p)))
	}
	r.clusterNodes = nodes
	r.progress("joining %s into a cluster", strings.Join(nodes, " "))
	var args []string
	if r.tls != nil {
		args = []string{"--tls", "--cacert", r.tls.ca, "--sni", r.tls.serverName}
	}
	// valkey-cli logs in as the default user, which the run's ACL file
	// leaves as Valkey makes it.
	args = append(append(args, "--cluster", "create"), nodes...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	repaired := make(chan struct{})
	go func() { defer close(repaired); r.repairClusterMeet(cctx) }()
	out, err := r.sb.Command(cctx, "valkey-cli", args...).CombinedOutput()
	cancel()
	<-repaired
	if err != nil {
		return fmt.Errorf("valkey-cli --cluster create: %w: %s; nodes' views: %s", err, lastLine(out), r.clusterViews(ctx))
	}
	if err := r.waitClusterReplica(ctx); err != nil {
		return err
	}
	return r.shortenNodeTimeout(ctx)
}

// clusterMeetRepairAfter is how long the create may wait for the nodes
// to know each other before repairClusterMeet re-introduces them.
const clusterMeetRepairAfter = 5 * time.Second

// repairClusterMeet re-sends CLUSTER MEET, from every node that knows some
// of the others but not all, to the nodes it does not know, every few
// seconds until ctx ends. valkey-cli --cluster create sends each MEET once
// and then waits for every node to report the same configuration, with no
// retry: a handshake that fails (under CI load one create waited out its
// whole minute) leaves it waiting forever. A node that knows only itself is
// left alone: valkey-cli has not introduced the nodes yet, and it refuses
// to create a cluster from nodes that already know others.
func (r *run) repairClusterMeet(ctx context.Context) {
	for sleepCtx(ctx, clusterMeetRepairAfter) {
		for _, from := range r.clusterNodes {
			known, err := r.clusterKnown(ctx, from)
			if err != nil || len(known) < 2 || len(known) >= len(r.clusterNodes) {
				continue
			}
			adm := &admin{ep: r.endpoint(from)}
			for _, to := range r.clusterNodes {
				host, port, _ := net.SplitHostPort(to)
				if known[to] {
					continue
				}
				_ = adm.do(ctx, adminTimeout, func(ctx context.Context, c valkey.Client) error {
					return c.Do(ctx, c.B().ClusterMeet().Ip(host).Port(mustAtoi(port)).Build()).Error()
				})
				r.progress("cluster: %s did not know %s yet; MEET sent again", from, to)
			}
			adm.close()
		}
	}
}

// clusterKnown returns the addresses (host:port) of the nodes, itself
// included, that node lists in CLUSTER NODES past the handshake.
func (r *run) clusterKnown(ctx context.Context, node string) (map[string]bool, error) {
	view, err := r.clusterNodesOf(ctx, node)
	if err != nil {
		return nil, err
	}
	return knownNodes(view, node), nil
}

// knownNodes parses CLUSTER NODES as seen by node: the addresses of the
// nodes past the handshake, node itself under the address it was given.
func knownNodes(view, node string) map[string]bool {
	known := map[string]bool{}
	for _, line := range strings.Split(view, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || strings.Contains(f[2], "handshake") || strings.Contains(f[2], "noaddr") {
			continue
		}
		a, _, _ := strings.Cut(f[1], "@") // ip:port@cport[,hostname]
		if strings.Contains(f[2], "myself") {
			a = node // a node may not know its own address yet
		}
		known[a] = true
	}
	return known
}

// clusterNodesOf is node's CLUSTER NODES.
func (r *run) clusterNodesOf(ctx context.Context, node string) (string, error) {
	adm := &admin{ep: r.endpoint(node)}
	defer adm.close()
	var s string
	err := adm.do(ctx, adminTimeout, func(ctx context.Context, c valkey.Client) error {
		var err error
		s, err = c.Do(ctx, c.B().ClusterNodes().Build()).ToString()
		return err
	})
	return s, err
}

// clusterViews describes, for an error, how many nodes each node knows
// and with which flags, so a create that never converges says why.
func (r *run) clusterViews(ctx context.Context) string {
	var b strings.Builder
	for _, node := range r.clusterNodes {
		view, err := r.clusterNodesOf(ctx, node)
		if err != nil {
			fmt.Fprintf(&b, "[%s: %v] ", node, err)
			continue
		}
		var flags []string
		for _, line := range strings.Split(strings.TrimSpace(view), "\n") {
			if f := strings.Fields(line); len(f) > 2 {
				flags = append(flags, f[1]+" "+f[2])
			}
		}
		fmt.Fprintf(&b, "[%s knows %d: %s] ", node, len(flags), strings.Join(flags, ", "))
	}
	return strings.TrimSpace(b.String())
}

func mustAtoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// shortenNodeTimeout sets every node's cluster-node-timeout to
// clusterNodeTimeout once the cluster is up (see clusterFormTimeout).
func (r *run) shortenNodeTimeout(ctx context.Context) error {
	for _, node := range r.clusterNodes {
		adm := &admin{ep: r.endpoint(node)}
		err := adm.do(ctx, adminTimeout, func(ctx context.Context, c valkey.Client) error {
			return c.Do(ctx, c.B().ConfigSet().ParameterValue().ParameterValue("cluster-node-timeout", clusterNodeTimeout).Build()).Error()
		})
		adm.close()
		if err != nil {
			return fmt.Errorf("CONFIG SET cluster-node-timeout %s on %s: %w", clusterNodeTimeout, node, err)
		}
	}
	return nil
}

// startClusterNode starts one cluster node on port and waits for PING.
func (r *run) startClusterNode(ctx context.Context, port int) error {
	dir := r.sb.Dir
	bind := "127.0.0.1 -::1"
	if r.cfg.Hosts > 0 {
		bind += " " + r.clusterHost()
	}
	args := []string{"--bind", bind, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--protected-mode", "no", "--dir", dir, "--dbfilename", fmt.Sprintf("dump-%d.rdb", port),
		"--logfile", filepath.Join(dir, fmt.Sprintf("valkey-%d.log", port)),
		"--maxclients", strconv.Itoa(max(FDsNeeded(r.cfg), 10000))}
	args = append(args, r.nodeArgs(port)...)
	cmd := r.sb.Command(context.Background(), "valkey-server", append(args, clusterArgs(dir, port)...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start cluster node %d: %w", port, err)
	}
	waitc := make(chan struct{})
	go func() { cmd.Wait(); close(waitc) }()
	r.onClose(func() { stopProcess(cmd, waitc) })
	adm := &admin{ep: r.endpoint(net.JoinHostPort(r.clusterHost(), strconv.Itoa(port)))}
	defer adm.close()
	err := adm.doRetry(ctx, 30*time.Second, func(ctx context.Context, c valkey.Client) error {
		return c.Do(ctx, c.B().Ping().Build()).Error()
	})
	if err != nil {
		return fmt.Errorf("cluster node %d: %w", port, err)
	}
	return nil
}

// replicaLine is INFO replication's line of an online replica.
var replicaLine = regexp.MustCompile(`^ip=[^,]+,port=(\d+),state=online`)

// waitClusterReplica waits until the lab's server has an online replica
// and the cluster is ok, records the replica as the failover's candidate
// and checks that the server owns clusterKey's slot.
func (r *run) waitClusterReplica(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := r.adm.info(ctx, 5*time.Second, "replication")
		if err == nil {
			if sm := replicaLine.FindStringSubmatch(m["slave0"]); sm != nil && r.clusterOK(ctx, r.adm) {
				addr := net.JoinHostPort(r.clusterHost(), sm[1])
				r.clusterReplica = addr
				r.progress("cluster up; the primary %s has its replica on %s", r.cfg.Target, addr)
				return r.adm.do(ctx, adminTimeout, func(ctx context.Context, c valkey.Client) error {
					err := c.Do(ctx, c.B().Get().Key(clusterKey).Build()).Error()
					if err != nil && !valkey.IsValkeyNil(err) {
						return fmt.Errorf("GET %s on %s (it must own the key's slot): %w", clusterKey, r.cfg.Target, err)
					}
					return nil
				})
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster's replica of %s was not in sync within 30s (last: %q %v)", r.cfg.Target, m["slave0"], err)
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// clusterOK reports whether the node behind adm says cluster_state:ok.
func (r *run) clusterOK(ctx context.Context, adm *admin) bool {
	var s string
	err := adm.do(ctx, adminTimeout, func(ctx context.Context, c valkey.Client) error {
		var err error
		s, err = c.Do(ctx, c.B().ClusterInfo().Build()).ToString()
		return err
	})
	return err == nil && strings.Contains(s, "cluster_state:ok")
}

// clusterFailover SIGKILLs the lab's server (a primary) and waits until
// the cluster itself has promoted its replica: the replica says
// role:master and cluster_state:ok. The lab sends no failover command.
func (r *run) clusterFailover(ctx context.Context, mark func()) error {
	mark()
	if err := r.sb.StopValkey(); err != nil {
		return fmt.Errorf("kill the primary: %w", err)
	}
	killed := time.Now()
	addr := r.clusterReplica
	adm := &admin{ep: r.endpoint(addr)}
	deadline := killed.Add(30 * time.Second)
	for {
		m, err := adm.info(ctx, 5*time.Second, "replication")
		if err == nil && m["role"] == "master" && r.clusterOK(ctx, adm) {
			break
		}
		if time.Now().After(deadline) {
			adm.close()
			return fmt.Errorf("the cluster did not promote %s within 30s (role %q, %v)", addr, m["role"], err)
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			adm.close()
			return ctx.Err()
		}
	}
	old := r.adm
	r.adm = adm
	old.close()
	ms := time.Since(killed).Milliseconds()
	r.res.FailoverTo, r.res.PromoteMS = addr, &ms
	return nil
}

// lastLine is the last non-empty line of a command's output.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// goRedisCluster is go-redis's ClusterClient: it reads clusterKey, which
// it routes to the slot's primary and follows MOVED and topology changes.
type goRedisCluster struct{ c *redis.ClusterClient }

func (g goRedisCluster) ping(ctx context.Context) error {
	if err := g.c.Get(ctx, clusterKey).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	return nil
}
func (g goRedisCluster) close() { g.c.Close() }

// newGoRedisCluster returns a ClusterClient with default options but the
// counting dialer, seeded with every node of the cluster (a seed list, as
// go-redis recommends: with only the killed primary as its seed it cannot
// reload the topology, since it reloads from its seeds until its first
// clean-up of unused nodes a minute after a state load).
func newGoRedisCluster(r *run, dial DialFunc) pinger {
	opt := &redis.ClusterOptions{Addrs: r.clusterNodes, Dialer: dial, Username: r.cfg.User, Password: r.cfg.Password}
	switch r.cfg.Setup {
	case "none":
		opt.Protocol, opt.DisableIdentity = 2, true
	case "auth":
		opt.ClientName = labLib
	}
	return goRedisCluster{redis.NewClusterClient(opt)}
}

// valkeyGoCluster: valkey-go turns into its cluster client by itself
// when the seed node is in cluster mode; it too reads clusterKey.
type valkeyGoCluster struct{ valkeyGo }

func (v valkeyGoCluster) ping(ctx context.Context) error {
	err := v.c.Do(ctx, v.c.B().Get().Key(clusterKey).Build()).Error()
	if err != nil && !valkey.IsValkeyNil(err) {
		return err
	}
	return nil
}
