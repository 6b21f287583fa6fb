//go:build !linux

package netns

import (
	"errors"
	"fmt"
	"runtime"
)

var errUnsupported = fmt.Errorf("network namespaces not supported on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)

// Do runs fn directly for an empty path and fails otherwise.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return errUnsupported
}

// Check always fails outside Linux.
func Check(path string) error { return errUnsupported }
