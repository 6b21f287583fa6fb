//go:build !linux

package source

import (
	"errors"
	"fmt"
	"runtime"
)

// statID is only needed for network namespaces, which are Linux-only.
func statID(path string) (fileID, error) {
	return fileID{}, fmt.Errorf("network namespace %s on %s: %w", path, runtime.GOOS, errors.ErrUnsupported)
}
