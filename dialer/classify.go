package dialer

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// isEOFOrReset reports whether err is the peer closing or resetting the
// connection. syscall's errno names exist on every Unix and Windows.
func isEOFOrReset(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE)
}

// isTimeout reports whether err is a timeout (a deadline, an I/O or
// connect timeout), as opposed to the server closing or refusing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}

// isRefused reports whether err is a refused connect (the kernel answered
// the SYN with a reset: nothing listens on the port).
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}
