package lab

import (
	"errors"
	"slices"
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

// AvailableStrategies returns the strategies this binary can run, in the
// order of a full comparison: Strategies without the ones it was built
// without.
func AvailableStrategies() []string {
	return slices.DeleteFunc(slices.Clone(Strategies), func(s string) bool {
		return s == GLIDEStrategy && !glideBuiltIn
	})
}

// glideFDsPerClient bounds the file descriptors one GLIDE client holds:
// its TCP connection plus its own Tokio runtime's epoll, eventfd and
// wake-up sockets (5-6 measured with v2.5.3), with room to spare.
const glideFDsPerClient = 8
