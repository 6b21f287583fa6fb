package lab

import (
	"context"
	"errors"
)

// GLIDEStrategy is the strategy that runs the valkey-glide Go client. It
// links GLIDE's Rust core through cgo, so it is only in binaries built with
// the glide build tag (make build-glide); see GLIDEBuiltIn.
const GLIDEStrategy = "valkey-glide"

// ErrNotBuiltIn is returned (wrapped with ErrConfig) by Config.Validate for
// a strategy this binary was built without.
var ErrNotBuiltIn = errors.New(`strategy valkey-glide is not built into this binary: ` +
	`build it with "make build-glide" (the glide build tag; needs cgo and a C compiler)`)

// GLIDEBuiltIn reports whether this binary has the valkey-glide strategy.
func GLIDEBuiltIn() bool { return glideBuiltIn }

// glideFDsPerClient bounds the file descriptors one GLIDE client holds:
// its TCP connection plus its own Tokio runtime's epoll, eventfd and
// wake-up sockets (5-6 measured with v2.5.3), with room to spare.
const glideFDsPerClient = 8

func init() { strategies.register(40, GLIDEStrategy, glideStrategy{}) }

// glideStrategy runs GLIDE's Go client, one per instance (valkeyglide.go).
type glideStrategy struct{}

func (glideStrategy) check(c Config) error {
	switch {
	case !glideBuiltIn:
		return &ConfigError{Field: "Strategy", Msg: ErrNotBuiltIn.Error(), Err: ErrNotBuiltIn}
	case !c.netnsKnown():
		return bad("NetNS", "valkey-glide dials from its Rust core, where the lab cannot count dials; it counts them in the "+
			"kernel counters of the server's network namespace instead: give {NetNS} (the server's, e.g. "+
			"/proc/PID/ns/net) or {Spawn}")
	case c.TLS && c.Spawn == nil:
		// An outside server's TLS settings are a tls.Config here, not
		// the PEM that GLIDE's Rust core takes as its root certificates.
		return bad("TLS", "valkey-glide runs with {TLS} only against the run's own server ({Spawn}), whose CA it is given")
	case c.SourceAddrs > 1:
		return bad("SourceAddrs", "{SourceAddrs} %d: valkey-glide dials from its own core, always from the address the kernel picks", c.SourceAddrs)
	}
	return nil
}

func (glideStrategy) traits(c Config) traits {
	fds := glideFDsPerClient
	if c.Cluster {
		// A connection to each of the cluster's six nodes and a
		// management connection to each, besides the runtime's own.
		fds += 2 * (len(clusterPorts) + 1)
	}
	return traits{connsPerClient: 1, fdsPerInstance: fds, kernelDials: true, ownSource: true}
}

// instance k's GLIDE client runs in the server's namespace, or with client
// hosts on host k mod Hosts, as every other strategy's instance k.
func (glideStrategy) instance(ctx context.Context, r *run, k int) (instance, error) {
	ns := r.cfg.NetNS
	if len(r.hostNetNS) > 0 {
		ns = r.hostNetNS[k%len(r.hostNetNS)]
	}
	p, err := newValkeyGlide(ctx, r, ns)
	if err != nil {
		return nil, err
	}
	return libInstance{r, p}, nil
}
