//go:build linux

package sandbox

import "syscall"

// procAttr puts valkey-server in its own process group and kills it if
// stormguard dies, so no server outlives its lab.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
