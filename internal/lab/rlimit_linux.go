//go:build linux

package lab

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// RaiseFDLimit raises the process's RLIMIT_NOFILE soft limit to the hard
// limit and reports an error if that is still below need.
func RaiseFDLimit(need int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read fd limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raise fd limit to %d: %w", lim.Max, err)
		}
	}
	if lim.Cur < uint64(need) {
		return fmt.Errorf("fd limit %d is below the %d this run needs (raise the hard limit: ulimit -Hn)", lim.Cur, need)
	}
	return nil
}
