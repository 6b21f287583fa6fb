//go:build linux

package defuse

// kernel is the nftables side of the manager; nftClient implements it.
func openKernel(ns string) (kernel, error) { return openNFT(ns, nil) }
