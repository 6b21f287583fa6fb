package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// valkeyDown is the error Collect returns while there is no connection. It
// unwraps to ErrUnavailable and to the cause.
type valkeyDown struct {
	reason string
	cause  error
}

func (e *valkeyDown) Error() string   { return unavailablePrefix + e.reason }
func (e *valkeyDown) Unwrap() []error { return []error{ErrUnavailable, e.cause} }

// connectError is why a connection could not be made or was lost, phrased
// for an operator. It never holds the password: Valkey's error replies and
// Go's network errors don't echo it, and addresses are printed host:port.
type connectError struct {
	msg   string
	cause error
	auth  bool // authentication failed or is required
}

func (e *connectError) Error() string { return e.msg }
func (e *connectError) Unwrap() error { return e.cause }

// serverSaid is a handshake failure after which the connection's first
// bytes turned out to be an error line from the server.
type serverSaid struct {
	line string
	err  error
}

func (e *serverSaid) Error() string { return e.err.Error() + " (server said: " + e.line + ")" }
func (e *serverSaid) Unwrap() error { return e.err }

// ErrValkeyAuth is matched (errors.Is) by connection errors caused by a
// wrong or missing password.
var ErrValkeyAuth = errors.New("authentication failed")

func (e *connectError) Is(target error) bool { return e.auth && target == ErrValkeyAuth }

// describeConnectErr turns a failed connect or handshake into one line.
func describeConnectErr(hostport, user string, tlsOn bool, timeout time.Duration, err error) *connectError {
	ce := &connectError{cause: err}
	var ve *valkey.ValkeyError
	if errors.As(err, &ve) {
		reply := ve.Error()
		if user == "" {
			user = "default"
		}
		switch {
		case strings.HasPrefix(reply, "WRONGPASS"):
			ce.auth = true
			ce.msg = fmt.Sprintf("authentication failed at %s for user %q: %s", hostport, user, reply)
		case strings.HasPrefix(reply, "NOAUTH"):
			ce.auth = true
			ce.msg = fmt.Sprintf("authentication failed at %s: Valkey requires a password (give valkey://user:pass@host:port, VALKEY_PASSWORD or --password-file): %s", hostport, firstSentence(reply))
		case strings.Contains(reply, "max number of clients"):
			ce.msg = fmt.Sprintf("connect %s: refused by Valkey: %s", hostport, reply)
		default:
			ce.msg = fmt.Sprintf("connect %s: handshake refused: %s", hostport, reply)
		}
		return ce
	}
	var said *serverSaid
	if errors.As(err, &said) {
		// The server wrote an error and hung up before the handshake
		// finished (maxclients, protected mode): that line is the reason.
		ce.msg = fmt.Sprintf("connect %s: refused by Valkey: %s", hostport, said.line)
		return ce
	}
	ce.msg = "connect " + hostport + ": " + describeNetErr(err, timeout)
	if errors.Is(err, valkeyconn.ErrTLSNoAnswer) {
		ce.msg += valkeyconn.TLSNoAnswerHint
	}
	if tlsOn {
		// Over TLS a refused client certificate looks the same: with TLS
		// 1.3 the server checks it after our side of the handshake is
		// done, and its alert may or may not arrive before the reset.
		ce.msg = strings.Replace(ce.msg, handshakeHint, tlsHandshakeHint, 1)
	}
	return ce
}

// describeLoss phrases why an established connection died.
func describeLoss(err error) string {
	return describeNetErr(err, 0)
}

// describeNetErr names the network-level cause without Go's "dial tcp
// a:b->c:d" noise.
func describeNetErr(err error, timeout time.Duration) string {
	var dnsErr *net.DNSError
	var errno syscall.Errno
	var opErr *net.OpError
	switch {
	case errors.Is(err, errRedialRefused), errors.Is(err, errSecondSocket), errors.Is(err, errSourceClosed):
		return err.Error()
	case errors.As(err, &dnsErr):
		return "cannot resolve host: " + dnsErr.Err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		if timeout > 0 {
			return "connection closed by the server during the handshake" + handshakeHint
		}
		return "connection closed by the server (EOF)"
	case timeout > 0 && errors.Is(err, syscall.ECONNRESET) && !(errors.As(err, &opErr) && opErr.Op == "dial"):
		return "connection reset by the server during the handshake" + handshakeHint
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		if timeout > 0 {
			return fmt.Sprintf("no answer within %s", timeout)
		}
		return "no reply in time (stall limit reached)"
	case errors.As(err, &errno):
		return errno.Error()
	case errors.As(err, &opErr) && opErr.Err != nil:
		return opErr.Err.Error()
	}
	return err.Error()
}

const (
	handshakeHint    = " (a TLS port reached without valkeys://, or a TLS Valkey at maxclients)"
	tlsHandshakeHint = " (the server refused our client certificate: give --cert and --key signed by a CA it trusts; or a TLS Valkey at maxclients)"
)

// firstSentence trims Valkey's long NOAUTH explanation.
func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i > 0 {
		return s[:i+1]
	}
	if i := strings.Index(s, ", "); i > 0 {
		return s[:i]
	}
	return s
}
