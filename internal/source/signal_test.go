package source

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestClassify(t *testing.T) {
	other := errors.New("boom")
	tests := []struct {
		name        string
		err         error
		unavailable bool
		reason      string // substring of Error()
		cause       error
	}{
		{"nil", nil, false, "", nil},
		{"ErrNotExist", fs.ErrNotExist, true, "read x: not present", fs.ErrNotExist},
		{"wrapped PathError ENOENT", &os.PathError{Op: "open", Path: "/proc/net/netstat", Err: syscall.ENOENT}, true, "read x: not present", os.ErrNotExist},
		{"ErrPermission", fmt.Errorf("open: %w", fs.ErrPermission), true, "permission denied", fs.ErrPermission},
		{"EPERM", syscall.EPERM, true, "permission denied", syscall.EPERM},
		{"EACCES", &os.PathError{Op: "open", Path: "/proc/sys/x", Err: syscall.EACCES}, true, "permission denied", syscall.EACCES},
		{"EOPNOTSUPP", fmt.Errorf("ioctl: %w", syscall.EOPNOTSUPP), true, "read x: not supported", syscall.EOPNOTSUPP},
		{"EPROTONOSUPPORT", syscall.EPROTONOSUPPORT, true, "not supported", syscall.EPROTONOSUPPORT},
		{"ErrUnsupported", fmt.Errorf("on plan9: %w", errors.ErrUnsupported), true, "not supported", errors.ErrUnsupported},
		{"already unavailable keeps its reason", Unavailablef("nf_conntrack module not loaded"), true, "unavailable: nf_conntrack module not loaded", nil},
		{"other errors stay failures", other, false, "read x: boom", other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify("read x", tt.err)
			if tt.err == nil {
				if got != nil {
					t.Fatalf("Classify(nil) = %v", got)
				}
				return
			}
			if errors.Is(got, ErrUnavailable) != tt.unavailable {
				t.Errorf("errors.Is(%v, ErrUnavailable) = %v, want %v", got, !tt.unavailable, tt.unavailable)
			}
			if !strings.Contains(got.Error(), tt.reason) {
				t.Errorf("Classify = %q, want it to contain %q", got, tt.reason)
			}
			if tt.cause != nil && !errors.Is(got, tt.cause) {
				t.Errorf("Classify = %v no longer unwraps to %v", got, tt.cause)
			}
			if strings.Contains(got.Error(), "\n") {
				t.Errorf("reason is not one line: %q", got)
			}
		})
	}
}
