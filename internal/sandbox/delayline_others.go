//go:build !linux

package sandbox

import (
	"errors"
	"time"
)

// DelayLine needs Linux TUN devices.
type DelayLine struct{}

// Link is one link of a DelayLine.
type Link struct {
	PathA, DevA, PathB, DevB string
}

// NewDelayLine fails: TUN devices and network namespaces are Linux's.
func NewDelayLine(links []Link, delay time.Duration) (*DelayLine, error) {
	return nil, errors.New("delay line: needs Linux")
}

// ServeDelayLine does nothing here.
func ServeDelayLine() {}

// Close does nothing.
func (l *DelayLine) Close() error { return nil }
