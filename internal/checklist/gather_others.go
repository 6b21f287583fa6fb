//go:build !linux

package checklist

import (
	"errors"
	"fmt"
	"net"
	"runtime"
)

var errUnsupported = fmt.Errorf("not supported on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)

func conntrackTracked(string, net.Addr, net.Addr) (bool, error) { return false, errUnsupported }

func sameNetNS(int, string) error { return errUnsupported }

func readNIC(f *Facts) { f.NICErr = "NIC counters: " + errUnsupported.Error() }
