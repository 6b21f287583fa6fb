//go:build glide && cgo && linux

package lab

/*
// GLIDE's FFI logger (lib.h of valkey-glide/go v2.5.3): the Go wrapper
// does not expose it, and by default the Rust core prints WARN lines on
// stdout, which would corrupt storm --json.
struct glideLogResult { char *log_error; int level; };
extern struct glideLogResult *init(const int *level, const char *file_name);
extern void free_log_result(struct glideLogResult *r);

static int glideLogOff(void) {
	int off = 5; // Level OFF
	struct glideLogResult *r = init(&off, 0);
	int failed = r != 0 && r->log_error != 0;
	free_log_result(r);
	return failed;
}
*/
import "C"

import (
	"context"
	"fmt"
	"net"
	"os/signal"
	"strconv"
	"syscall"

	glide "github.com/valkey-io/valkey-glide/go/v2"
	"github.com/valkey-io/valkey-glide/go/v2/config"

	"github.com/stormguard/stormguard/internal/netns"
)

// glideBuiltIn: this binary links valkey-glide's Go client (cgo).
const glideBuiltIn = true

type valkeyGlide struct{ c *glide.Client }

func (v valkeyGlide) ping(ctx context.Context) error {
	_, err := v.c.Ping(ctx)
	return err
}

func (v valkeyGlide) close() { v.c.Close() }

// valkeyGlideCluster is GLIDE's ClusterClient (the failover scenario with
// Cluster): it reads clusterKey, routed to the slot's primary, as the
// other cluster clients do; a missing key is an answer.
type valkeyGlideCluster struct{ c *glide.ClusterClient }

func (v valkeyGlideCluster) ping(ctx context.Context) error {
	_, err := v.c.Get(ctx, clusterKey)
	return err
}

func (v valkeyGlideCluster) close() { v.c.Close() }

// glideProcessSetup is what the process needs once GLIDE runs in it (each
// call repeats it; all three are idempotent).
func glideProcessSetup() {
	// Like go-redis's pool logging, GLIDE's log lines (one per failed
	// reconnect in a storm) are switched off; a failure to do so only
	// costs noise.
	C.glideLogOff()
	// GLIDE's Tokio threads write with writev(2), which has no
	// MSG_NOSIGNAL: a write to a connection the storm just killed raises
	// SIGPIPE on a thread Go does not own, and Go's default for that is to
	// end the whole process ("signal: broken pipe", seen in CI). Ignored,
	// the write fails with EPIPE and GLIDE reconnects as it should.
	signal.Ignore(syscall.SIGPIPE)
	// GLIDE v2.5.3 creates its OpenTelemetry singleton lazily, without
	// synchronisation, on every command (GetOtelInstance): concurrent
	// first PINGs race (go test -race reports it). Creating it here, before
	// this instance's clients start, leaves them only reading it.
	glide.GetOtelInstance()
}

// glideTLS is GLIDE's TLS setting for the run's certificates: verify the
// server against the run's CA (PEM) instead of the platform's trust store,
// every other TLS setting GLIDE's default. nil without TLS.
func glideTLS(r *run) (*config.TlsConfiguration, error) {
	if r.tls == nil {
		return nil, nil
	}
	ca, err := config.LoadRootCertificatesFromFile(r.tls.ca)
	if err != nil {
		return nil, fmt.Errorf("valkey-glide: the run's CA: %w", err)
	}
	return config.NewTlsConfiguration().WithRootCertificates(ca), nil
}

// glideAddr parses a host:port for GLIDE's configuration.
func glideAddr(addr string) (*config.NodeAddress, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: address %q: %v", ErrConfig, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, fmt.Errorf("%w: address %q: port: %v", ErrConfig, addr, err)
	}
	return &config.NodeAddress{Host: host, Port: port}, nil
}

// newValkeyGlide returns a GLIDE client with default settings (connection
// timeout, request timeout, reconnect backoff): only the address (with
// Cluster: the seed list), TLS with the run's CA and, when the lab has
// them, AUTH credentials are set. With Cluster it is GLIDE's ClusterClient,
// otherwise its standalone Client.
//
// GLIDE's Rust core opens every socket itself, on a Tokio runtime thread
// that NewClient starts for this client (one per client: "Valkey-GLIDE Go
// thread"). A new Linux thread inherits the network namespace of the thread
// that creates it, so NewClient runs on a thread inside the namespace ns
// (netns.Do: the server's, or the instance's client host) and the runtime
// thread, with every connect and reconnect it makes later, stays there.
// GLIDE connects in NewClient; like valkey-go's, a failed creation is
// retried every Period until ctx ends.
func newValkeyGlide(ctx context.Context, r *run, ns string) (pinger, error) {
	glideProcessSetup()
	tlsCfg, err := glideTLS(r)
	if err != nil {
		return nil, err
	}
	open, err := glideOpener(r, tlsCfg)
	if err != nil {
		return nil, err
	}
	for {
		var p pinger
		err := netns.Do(ns, func() error {
			var err error
			p, err = open()
			return err
		})
		if err == nil {
			return p, nil
		}
		if !sleepCtx(ctx, r.cfg.Period) {
			return nil, fmt.Errorf("valkey-glide client: %w", err)
		}
	}
}

// glideOpener returns the function that creates one GLIDE client of the
// run's kind (standalone or cluster) from its configuration.
func glideOpener(r *run, tlsCfg *config.TlsConfiguration) (func() (pinger, error), error) {
	var creds *config.ServerCredentials
	if r.cfg.Password != "" {
		creds = config.NewServerCredentials(r.cfg.User, r.cfg.Password)
	}
	if r.cfg.Cluster {
		cfg := config.NewClusterClientConfiguration()
		// Seeded with every node, as go-redis's and valkey-go's.
		for _, n := range r.clusterNodes {
			a, err := glideAddr(n)
			if err != nil {
				return nil, err
			}
			cfg = cfg.WithAddress(a)
		}
		if tlsCfg != nil {
			cfg = cfg.WithUseTLS(true).WithAdvancedConfiguration(
				config.NewAdvancedClusterClientConfiguration().WithTlsConfiguration(tlsCfg))
		}
		if creds != nil {
			cfg = cfg.WithCredentials(creds)
		}
		if r.cfg.Setup == "auth" {
			cfg = cfg.WithClientName(labLib)
		}
		return func() (pinger, error) {
			c, err := glide.NewClusterClient(cfg)
			if err != nil {
				return nil, err
			}
			return valkeyGlideCluster{c}, nil
		}, nil
	}
	a, err := glideAddr(r.cfg.Target)
	if err != nil {
		return nil, err
	}
	cfg := config.NewClientConfiguration().WithAddress(a)
	if tlsCfg != nil {
		cfg = cfg.WithUseTLS(true).WithAdvancedConfiguration(
			config.NewAdvancedClientConfiguration().WithTlsConfiguration(tlsCfg))
	}
	if creds != nil {
		cfg = cfg.WithCredentials(creds)
	}
	if r.cfg.Setup == "auth" {
		cfg = cfg.WithClientName(labLib)
	}
	return func() (pinger, error) {
		c, err := glide.NewClient(cfg)
		if err != nil {
			return nil, err
		}
		return valkeyGlide{c}, nil
	}, nil
}
