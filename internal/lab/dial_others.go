//go:build !linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
)

var errUnsupported = fmt.Errorf("network namespaces not supported on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)

type socketFactory struct{}

func newSocketFactory(string) (*socketFactory, error) { return nil, errUnsupported }

func (*socketFactory) close() {}

func (*socketFactory) dial(context.Context, string, string) (net.Conn, error) {
	return nil, errUnsupported
}
