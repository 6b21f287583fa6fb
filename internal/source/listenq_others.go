//go:build !linux

package source

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/stormguard/stormguard/internal/sample"
)

// openListenq fails outside Linux: sock_diag is a Linux interface. The
// source set turns this into a source that reports the reason per sample.
func openListenq(context.Context, Options) (sample.Source, error) {
	return nil, fmt.Errorf("accept queue via sock_diag not supported on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
}
