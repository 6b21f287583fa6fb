//go:build !linux

package sandbox

import "errors"

// Blackhole needs nftables in a Linux network namespace.
func Blackhole(string, int, string, string) (func() error, error) {
	return nil, errors.New("blackhole: nftables in a network namespace needs Linux")
}
