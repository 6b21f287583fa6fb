package source

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/stormguard/stormguard/internal/addr"
)

// ErrUnavailable marks a signal that cannot be read on this host (module not
// loaded, no such NIC, not permitted, server down). It is a value, not a
// failure of the tool.
var ErrUnavailable = errors.New("unavailable")

// Unavailable is an error explaining why a signal is unavailable.
type Unavailable struct {
	Reason string
	Err    error
}

func (u *Unavailable) Error() string {
	if u.Err != nil && u.Reason == "" {
		return "unavailable: " + u.Err.Error()
	}
	if u.Err != nil {
		return "unavailable: " + u.Reason + ": " + u.Err.Error()
	}
	return "unavailable: " + u.Reason
}

// Unwrap lets errors.Is(err, ErrUnavailable) and the underlying cause match.
func (u *Unavailable) Unwrap() []error { return []error{ErrUnavailable, u.Err} }

// Unavailablef builds an Unavailable with a formatted reason.
func Unavailablef(format string, a ...any) error {
	return &Unavailable{Reason: fmt.Sprintf(format, a...)}
}

// Classify maps "not on this host" errors (missing file or module, no
// permission, operation not supported) to Unavailable with reason; other
// errors are returned wrapped with reason.
func Classify(reason string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, ErrUnavailable):
		return err
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ENOENT):
		return &Unavailable{Reason: reason + ": not present", Err: err}
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return &Unavailable{Reason: reason + ": permission denied (needs root or CAP_NET_ADMIN)", Err: err}
	case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.EPROTONOSUPPORT), errors.Is(err, errors.ErrUnsupported):
		return &Unavailable{Reason: reason + ": not supported", Err: err}
	}
	return fmt.Errorf("%s: %w", reason, err)
}

// Target is one Valkey listener to observe.
type Target struct {
	// Addr is where Valkey listens, with credentials and TLS settings.
	Addr addr.Addr
	// NetNS is the path of the network namespace the listener lives in;
	// empty means the namespace stormguard runs in.
	NetNS string
	// ProcRoot is the procfs mount to read from (default "/proc"); tests
	// point it at fixtures.
	ProcRoot string
	// Label, when set, is the display name instead of host:port: discovery
	// sets it where host:port alone does not tell two listeners apart
	// (discover.Server.Name).
	Label string
}

// Name is the target's display name: Label, else host:port without
// credentials.
func (t Target) Name() string {
	if t.Label != "" {
		return t.Label
	}
	return t.Addr.HostPort()
}

// Port is the listener's TCP port.
func (t Target) Port() int { return t.Addr.Port }

// Proc returns the procfs root to use.
func (t Target) Proc() string {
	if t.ProcRoot == "" {
		return "/proc"
	}
	return t.ProcRoot
}
