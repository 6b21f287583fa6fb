//go:build !linux

package lab

import (
	"context"
	"errors"
)

// loopChurn: the churn event loop is Linux's (epoll); elsewhere churn
// runs the goroutine clients.
func (r *run) loopChurn() bool { return false }

func (r *run) churnLoop(context.Context) error {
	return errors.New("the churn event loop needs Linux")
}
