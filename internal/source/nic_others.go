//go:build !linux

package source

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/stormguard/stormguard/internal/sample"
)

// NewNIC returns a nic source that reports the ethtool ioctl as unsupported.
func NewNIC(c NICConfig) *NIC {
	return newNIC(c, func() (nicBackend, error) {
		return nil, fmt.Errorf("ethtool statistics on %s: %w", runtime.GOOS, errors.ErrUnsupported)
	})
}

func openNIC(_ context.Context, o Options) (sample.Source, error) {
	return NewNIC(NICConfigFor(o.Target)), nil
}
