//go:build !linux || !(amd64 || arm64)

package listentrace

import (
	"context"
	"log/slog"
	"time"
)

// Supported reports whether this build has the programs.
const Supported = false

// Tracer is not available on this platform.
type Tracer struct {
	// NoListeners is unused here.
	NoListeners string
}

// Open always fails here.
func Open(context.Context, string, uint16, *slog.Logger) (*Tracer, error) {
	return nil, ErrUnsupported
}

// Wake never fires.
func (*Tracer) Wake() <-chan struct{} { return nil }

// Walks is always 0 here.
func (*Tracer) Walks() uint64 { return 0 }

// Read fails.
func (*Tracer) Read() (Counters, error) { return Counters{}, ErrUnsupported }

// Close does nothing.
func (*Tracer) Close() error { return nil }

// WakeDelay is never known here.
func (*Tracer) WakeDelay() (time.Duration, bool) { return 0, false }

// Counts fails.
func (*Tracer) Counts() (established, synRecv uint64, err error) {
	return 0, 0, ErrUnsupported
}
