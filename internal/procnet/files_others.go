//go:build !linux

package procnet

import (
	"errors"
	"fmt"
	"runtime"
)

// StatID is only needed for network namespaces, which are Linux-only.
func StatID(path string) (FileID, error) {
	return FileID{}, fmt.Errorf("network namespace %s on %s: %w", path, runtime.GOOS, errors.ErrUnsupported)
}

// DiagListeners needs sock_diag, which is Linux-only.
func DiagListeners(ns string) ([]Listener, error) {
	return nil, fmt.Errorf("sock_diag on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
