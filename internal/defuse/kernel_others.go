//go:build !linux

package defuse

import (
	"errors"
	"fmt"
	"runtime"
)

var errUnsupported = fmt.Errorf("nftables mitigations are not supported on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)

func openKernel(ns string) (kernel, error) { return nil, errUnsupported }
