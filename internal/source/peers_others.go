//go:build !linux

package source

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// peerDumper is unavailable outside Linux: sock_diag is a Linux interface.
type peerDumper struct{}

func newPeerDumper(Target) *peerDumper { return nil }

func (*peerDumper) dump(context.Context, int) (PeerDump, error) {
	return PeerDump{}, fmt.Errorf("socket dump not supported on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
}

func (*peerDumper) close() {}
