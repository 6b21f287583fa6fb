//go:build !linux

package sandbox

import (
	"errors"
	"time"
)

// DelayLine needs Linux TUN devices.
type DelayLine struct{}

// NewDelayLine fails: TUN devices and network namespaces are Linux's.
func NewDelayLine(pathA, devA, pathB, devB string, delay time.Duration) (*DelayLine, error) {
	return nil, errors.New("delay line: needs Linux")
}

// Stats returns zeros.
func (l *DelayLine) Stats() (packets, dropped uint64) { return 0, 0 }

// Close does nothing.
func (l *DelayLine) Close() error { return nil }
