//go:build linux

package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/netns"
)

// SYNBurst starts n non-blocking connects to Valkey from inside the
// namespace, all within a millisecond or so: the sharpest storm a test can
// make. The caller closes the returned fds (also on error).
func (s *Sandbox) SYNBurst(n int) ([]int, error) {
	var fds []int
	err := netns.Do(s.NetNS, func() error {
		sa := &unix.SockaddrInet4{Port: s.Port, Addr: [4]byte{127, 0, 0, 1}}
		for i := 0; i < n; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("socket: %w", err)
			}
			fds = append(fds, fd)
			if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
				return fmt.Errorf("connect: %w", err)
			}
		}
		return nil
	})
	return fds, err
}
