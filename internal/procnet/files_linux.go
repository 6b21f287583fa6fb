//go:build linux

package procnet

import "golang.org/x/sys/unix"

// StatID returns the device and inode of the file at path.
func StatID(path string) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return FileID{}, err
	}
	return FileID{dev: st.Dev, ino: st.Ino}, nil
}
