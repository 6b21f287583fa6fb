package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/stormguard/stormguard/internal/sandbox"
)

// spawn starts the run's own valkey-server in a fresh network namespace
// (removed by close) and points the run at it.
func (r *run) spawn(ctx context.Context) error {
	if err := sandbox.Available(); err != nil {
		return bad("Spawn", "{Spawn}: %v", err)
	}
	sp := r.cfg.Spawn
	// With client hosts Valkey starts once their link exists, so that
	// it can listen on it.
	opts := sandbox.Options{Sysctls: map[string]string{}, NoValkey: r.cfg.Hosts > 0}
	if sp.Somaxconn > 0 {
		opts.Sysctls["net.core.somaxconn"] = strconv.Itoa(sp.Somaxconn)
	}
	if sp.Syncookies != nil {
		opts.Sysctls["net.ipv4.tcp_syncookies"] = strconv.Itoa(*sp.Syncookies)
	}
	if sp.TCPBacklog > 0 {
		opts.ValkeyArgs = append(opts.ValkeyArgs, "--tcp-backlog", strconv.Itoa(sp.TCPBacklog))
	}
	if r.cfg.Setup == "auth" {
		path, err := r.aclFile()
		if err != nil {
			return err
		}
		opts.ValkeyArgs = append(opts.ValkeyArgs, "--aclfile", path)
	}
	if r.cfg.TLS {
		addrs := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		if r.cfg.Hosts > 0 {
			addrs = append(addrs, sandbox.HostLinkAddr())
		}
		t, err := makeRunTLS(addrs)
		if err != nil {
			return err
		}
		r.onClose(t.close) // after the server is gone (close runs in reverse)
		r.tls = t
		port := opts.Port
		if port == 0 {
			port = 6379
		}
		opts.Port = port
		opts.ValkeyArgs = append(opts.ValkeyArgs, t.valkeyArgs(port)...)
		opts.ClientTLS = t.client
		r.cfg.TLSConfig = t.client
	}
	if r.cfg.Cluster {
		opts.Port = 6379
		opts.ValkeyArgs = append(opts.ValkeyArgs, "--cluster-enabled", "yes", "--cluster-node-timeout", clusterNodeTimeout,
			"--cluster-config-file", "nodes-6379.conf") // in the sandbox's --dir
		if r.cfg.TLS {
			opts.ValkeyArgs = append(opts.ValkeyArgs, clusterTLSArgs...)
		}
	}
	var clientCPUs []int
	if sp.ServerCPUs != "" {
		online, err := allowedCPUs()
		if err != nil {
			return err
		}
		server, clients, err := splitCPUs(sp.ServerCPUs, online)
		if err != nil {
			return bad("Spawn.ServerCPUs", "{Spawn.ServerCPUs}: %v", err)
		}
		opts.ValkeyPrefix = []string{"taskset", "-c", formatCPUList(server)}
		clientCPUs = clients
		r.serverCPUs, r.clientCPUs = formatCPUList(server), formatCPUList(clients)
	}
	mc := sp.Maxclients
	if mc == 0 {
		mc = max(FDsNeeded(r.cfg), 10000)
	}
	opts.ValkeyArgs = append(opts.ValkeyArgs, "--maxclients", strconv.Itoa(mc))
	r.progress("spawning valkey-server (somaxconn %s, tcp-backlog %s, maxclients %d)",
		orDefault(sp.Somaxconn), orDefault(sp.TCPBacklog), mc)
	sb, err := sandbox.New(ctx, opts)
	if err != nil {
		return fmt.Errorf("spawn: %w", err)
	}
	r.onClose(func() { _ = sb.Close() })
	r.sb = sb
	if err := r.recordQueue(sb, sp.TCPBacklog); err != nil {
		return err
	}
	r.cfg.Target, r.cfg.NetNS = sb.Addr(), sb.NetNS
	if r.cfg.Hosts > 0 {
		if err := r.addHosts(ctx, sb); err != nil {
			return err
		}
		if err := sb.StartValkey(ctx); err != nil {
			return fmt.Errorf("spawn: %w", err)
		}
	}
	if clientCPUs != nil {
		restore, err := pinProcess(clientCPUs)
		if err != nil {
			return err
		}
		r.onClose(restore)
	}
	down := sp.Down
	r.restart = func(ctx context.Context, markDown func()) error {
		if err := sb.StopValkey(); err != nil {
			return err
		}
		markDown()
		if !sleepCtx(ctx, down) {
			return ctx.Err()
		}
		return sb.StartValkey(ctx)
	}
	return nil
}

// valkeyTCPBacklog is valkey-server's default tcp-backlog (valkey.conf).
const valkeyTCPBacklog = 511

// recordQueue notes the spawned server's accept-queue settings for the
// result: somaxconn as its namespace has it, tcp-backlog as passed (or
// Valkey's default).
func (r *run) recordQueue(sb *sandbox.Sandbox, backlog int) error {
	v, err := sb.Sysctl("net.core.somaxconn")
	if err != nil {
		return fmt.Errorf("spawn: read somaxconn: %w", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return fmt.Errorf("spawn: somaxconn in the server's namespace is %q", v)
	}
	if backlog <= 0 {
		backlog = valkeyTCPBacklog
	}
	r.somaxconn, r.tcpBacklog = n, backlog
	return nil
}

func orDefault(v int) string {
	if v == 0 {
		return "default"
	}
	return strconv.Itoa(v)
}
