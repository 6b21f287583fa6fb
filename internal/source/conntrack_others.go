//go:build !linux

package source

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/stormguard/stormguard/internal/sample"
)

func openConntrack(context.Context, Options) (sample.Source, error) {
	return nil, fmt.Errorf("conntrack on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
