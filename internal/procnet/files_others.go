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
