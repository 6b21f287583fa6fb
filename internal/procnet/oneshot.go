package procnet

import (
	"fmt"
	"os"
	"strings"

	"github.com/stormguard/stormguard/internal/netns"
)

// SysctlPath is the /proc/sys file of a dotted sysctl name.
func SysctlPath(name string) string { return "/proc/sys/" + strings.ReplaceAll(name, ".", "/") }

// ReadSysctl reads one sysctl of the namespace ns ("" = ours), trimmed.
// /proc/sys/net shows the opening thread's namespace, so it is opened
// inside netns.Do.
func ReadSysctl(ns, name string) (string, error) {
	var v string
	err := netns.Do(ns, func() error {
		b, err := os.ReadFile(SysctlPath(name))
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", name, err)
	}
	return v, nil
}

// WriteSysctl writes one sysctl of the namespace ns.
func WriteSysctl(ns, name, value string) error {
	err := netns.Do(ns, func() error { return os.WriteFile(SysctlPath(name), []byte(value), 0o644) })
	if err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// ReadFile reads /proc/thread-self/net/NAME of the namespace ns once.
// (/proc/self/net would show the main thread's namespace, not ours.)
func ReadFile(ns, name string) ([]byte, error) {
	var b []byte
	err := netns.Do(ns, func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/" + name)
		return err
	})
	return b, err
}
