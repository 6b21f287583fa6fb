package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valkey-io/valkey-go"
)

// replicaPort is the port of the failover scenario's replica, next to the
// primary in the server's namespace.
const replicaPort = 6380

// failoverScenario: the run's server (Spawn) gets a replica in the same
// namespace before the clients start. The disruption SIGKILLs the
// primary; the lab then promotes the replica (REPLICAOF NO ONE, as an
// operator or a failover manager would) and points the service address at
// it. Clients follow the address, as a DNS name that a failover updates
// (a managed service's primary endpoint): every dial of the run — the
// lab's strategies', go-redis's and valkey-go's through the lab's dial —
// goes to the service address of the moment. t0 is the kill.
type failoverScenario struct{}

func (failoverScenario) check(c Config) error {
	switch {
	case c.Spawn == nil:
		return bad("Scenario", "the failover {Scenario} starts a replica next to the lab's own server: give {Spawn}")
	case c.Cluster && c.Strategy != "go-redis" && c.Strategy != "valkey-go" && c.Strategy != GLIDEStrategy:
		return bad("Strategy", "{Cluster} needs a cluster client: {Strategy} go-redis, valkey-go or %s, not %s", GLIDEStrategy, c.Strategy)
	}
	return nil
}

// A failover restarts the server as far as its counters go: the new
// primary's INFO counts from its own start.
func (failoverScenario) traits() scenarioTraits { return scenarioTraits{restarts: true} }

func (failoverScenario) disrupt(ctx context.Context, r *run, mark func()) error {
	if r.cfg.Cluster {
		return r.clusterFailover(ctx, mark)
	}
	mark()
	if err := r.sb.StopValkey(); err != nil {
		return fmt.Errorf("kill the primary: %w", err)
	}
	killed := time.Now()
	addr := r.replicaAddr()
	adm := &admin{ep: r.endpoint(addr)}
	err := adm.doRetry(ctx, 10*time.Second, func(ctx context.Context, c valkey.Client) error {
		return c.Do(ctx, c.B().Replicaof().No().One().Build()).Error()
	})
	if err != nil {
		adm.close()
		return fmt.Errorf("promote the replica at %s: %w", addr, err)
	}
	// From now on every new connection goes to the new primary, and the
	// lab's own measurements read it.
	r.svc.Store(&addr)
	if r.strategy.traits(r.cfg).kernelDials {
		if err := r.redirectService(ctx); err != nil {
			adm.close()
			return err
		}
	}
	old := r.adm
	r.adm = adm
	old.close()
	ms := time.Since(killed).Milliseconds()
	r.res.FailoverTo, r.res.PromoteMS = addr, &ms
	return nil
}

// redirectService moves the service address for a strategy that dials by
// itself (redis-py: its process connects to the host and port it was
// given, not through the lab's dial): in the server's namespace, new
// connections to the primary's port are redirected to the promoted
// replica's, as a virtual IP that a failover moves would. Connections
// that already exist are not touched (NAT applies from a connection's
// first packet); the namespace, and the rule with it, goes with the run.
func (r *run) redirectService(ctx context.Context) error {
	_, port, _ := net.SplitHostPort(r.cfg.Target)
	rules := fmt.Sprintf(`table ip stormguard_lab_failover {
	chain out { type nat hook output priority -100; tcp dport %[1]s redirect to :%[2]d; }
	chain pre { type nat hook prerouting priority -100; tcp dport %[1]s redirect to :%[2]d; }
}
`, port, replicaPort)
	cmd := r.sb.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("move the service address to the promoted replica (nft redirect, for %s): %w: %s",
			r.cfg.Strategy, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// replicaAddr is the replica's address as the clients reach it.
func (r *run) replicaAddr() string {
	host, _, _ := net.SplitHostPort(r.cfg.Target)
	return net.JoinHostPort(host, strconv.Itoa(replicaPort))
}

// target is the service address now: the run's target, or the promoted
// replica after a failover.
func (r *run) target() string {
	if p := r.svc.Load(); p != nil {
		return *p
	}
	return r.cfg.Target
}

// startReplica starts the failover scenario's replica in the server's
// namespace and waits until it has synchronised with the primary.
func (r *run) startReplica(ctx context.Context) error {
	host, port, _ := net.SplitHostPort(r.cfg.Target)
	primary := "127.0.0.1" // the replica runs next to the primary
	args := []string{"--bind", "* -::*", "--save", "", "--appendonly", "no", "--daemonize", "no",
		"--protected-mode", "no", "--dir", r.sb.Dir, "--dbfilename", "replica.rdb",
		"--logfile", filepath.Join(r.sb.Dir, "replica.log"), "--replicaof", primary, port,
		"--maxclients", strconv.Itoa(max(FDsNeeded(r.cfg), 10000))}
	args = append(args, r.nodeArgs(replicaPort)...)
	cmd := r.sb.Command(context.Background(), "valkey-server", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the replica: %w", err)
	}
	waitc := make(chan struct{})
	go func() { cmd.Wait(); close(waitc) }()
	r.onClose(func() { stopProcess(cmd, waitc) })
	r.progress("replica on %s, waiting for its sync with %s", net.JoinHostPort(host, strconv.Itoa(replicaPort)), r.cfg.Target)
	adm := &admin{ep: r.endpoint(r.replicaAddr())}
	defer adm.close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := adm.info(ctx, 5*time.Second, "replication")
		if err == nil && m["master_link_status"] == "up" {
			return nil
		}
		select {
		case <-waitc:
			return errors.New("the replica exited before its sync")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the replica did not sync within 30s (last: %v %v)", m["master_link_status"], err)
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// nodeArgs are the settings another server of the failover scenario (the
// replica, a cluster node) shares with the run's server: its port, plain
// or TLS-only with the run's certificates (replicating and, in a cluster,
// gossiping over TLS too), and the run's ACL file, which keeps the default
// user as Valkey makes it, so replication needs no masterauth.
func (r *run) nodeArgs(port int) []string {
	var args []string
	if r.tls != nil {
		args = append(r.tls.valkeyArgs(port), "--tls-replication", "yes")
		if r.cfg.Cluster {
			args = append(args, "--tls-cluster", "yes")
		}
	} else {
		args = []string{"--port", strconv.Itoa(port)}
	}
	if r.aclPath != "" {
		args = append(args, "--aclfile", r.aclPath)
	}
	return args
}

// stopProcess kills cmd's process group and waits for it.
func stopProcess(cmd *exec.Cmd, waitc <-chan struct{}) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-waitc:
	case <-time.After(5 * time.Second):
	}
}
