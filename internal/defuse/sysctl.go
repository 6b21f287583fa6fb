package defuse

import (
	"fmt"
	"os"
	"strings"

	"github.com/stormguard/stormguard/internal/netns"
)

func sysctlPath(key string) string { return "/proc/sys/" + strings.ReplaceAll(key, ".", "/") }

// readSysctl reads a sysctl of the namespace ns ("" = ours). /proc/sys/net
// shows the calling thread's namespace, so it is read inside netns.Do.
func readSysctl(ns, key string) (string, error) {
	var v string
	err := netns.Do(ns, func() error {
		b, err := os.ReadFile(sysctlPath(key))
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", key, err)
	}
	return v, nil
}

// writeSysctl writes a sysctl of the namespace ns.
func writeSysctl(ns, key, value string) error {
	err := netns.Do(ns, func() error { return os.WriteFile(sysctlPath(key), []byte(value), 0o644) })
	if err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// readNetFile reads /proc/thread-self/net/NAME in the namespace ns.
// (/proc/self/net would show the main thread's namespace, not ours.)
func readNetFile(ns, name string) ([]byte, error) {
	var b []byte
	err := netns.Do(ns, func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/" + name)
		return err
	})
	return b, err
}
