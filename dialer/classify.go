package dialer

import (
	"errors"
	"io"
	"syscall"
)

// isEOFOrReset reports whether err is the peer closing or resetting the
// connection. syscall's errno names exist on every Unix and Windows.
func isEOFOrReset(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE)
}
