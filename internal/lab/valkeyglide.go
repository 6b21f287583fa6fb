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

// newValkeyGlide returns a GLIDE standalone client with default settings
// (connection timeout, request timeout, reconnect backoff): only the
// address and, when the lab has them, AUTH credentials are set.
//
// GLIDE's Rust core opens every socket itself, on a Tokio runtime thread
// that NewClient starts for this client (one per client: "Valkey-GLIDE Go
// thread"). A new Linux thread inherits the network namespace of the thread
// that creates it, so NewClient runs on a thread inside the namespace
// (netns.Do) and the runtime thread, with every connect and reconnect it
// makes later, stays there. GLIDE connects in NewClient; like valkey-go's,
// a failed creation is retried every Period until ctx ends.
func newValkeyGlide(ctx context.Context, r *run) (pinger, error) {
	host, p, err := net.SplitHostPort(r.cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("%w: target %q: %v", ErrConfig, r.cfg.Target, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, fmt.Errorf("%w: target %q: port: %v", ErrConfig, r.cfg.Target, err)
	}
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
	cfg := config.NewClientConfiguration().WithAddress(&config.NodeAddress{Host: host, Port: port})
	if r.cfg.Password != "" {
		cfg = cfg.WithCredentials(config.NewServerCredentials(r.cfg.User, r.cfg.Password))
	}
	if r.cfg.Setup == "auth" {
		cfg = cfg.WithClientName(labLib)
	}
	for {
		var c *glide.Client
		err := netns.Do(r.cfg.NetNS, func() error {
			var err error
			c, err = glide.NewClient(cfg)
			return err
		})
		if err == nil {
			return valkeyGlide{c}, nil
		}
		if !sleepCtx(ctx, r.cfg.Period) {
			return nil, fmt.Errorf("valkey-glide client: %w", err)
		}
	}
}
