//go:build !linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"syscall"
)

var errUnsupported = fmt.Errorf("network namespaces not supported on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)

type socketFactory struct{}

func newSocketFactory(string, int) (*socketFactory, error) { return nil, errUnsupported }

func (*socketFactory) close() {}

func (*socketFactory) dial(context.Context, string, string, netip.Addr) (net.Conn, error) {
	return nil, errUnsupported
}

// bindNoPort has nothing to add where IP_BIND_ADDRESS_NO_PORT does not exist.
func bindNoPort(context.Context, string, string, syscall.RawConn) error { return nil }
