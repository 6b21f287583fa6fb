package defuse

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultStatePath is where applied mitigations are recorded.
const DefaultStatePath = "/var/lib/stormguard/defuse.json"

// Mitigation is one applied (or, in a dry run, planned) mitigation.
type Mitigation struct {
	ID      string    `json:"id"`
	Action  Action    `json:"action"`
	Port    int       `json:"port,omitempty"`
	NetNS   string    `json:"netns,omitempty"`
	Valkey  string    `json:"valkey,omitempty"` // host:port, never credentials
	Applied time.Time `json:"applied"`
	Expires time.Time `json:"expires"`
	TTL     string    `json:"ttl"`
	Rate    string    `json:"rate,omitempty"`
	Burst   uint32    `json:"burst,omitempty"`
	// Changes are exactly what was (or would be) changed: nft commands,
	// CONFIG SET lines, sysctl assignments, CLIENT KILL lines.
	Changes []string `json:"changes"`
	// Restore is what revert or expiry puts back.
	Restore *Restore `json:"restore,omitempty"`
	// KernelExpiry: the kernel stops the mitigation at Expires by itself,
	// even if stormguard is not running.
	KernelExpiry bool `json:"kernel_expiry"`
	// RestoreBy is what undoes the mitigation at Expires without any
	// stormguard process: RestoreByKernel, RestoreBySystemdTimer,
	// RestoreByProcess, RestoreByNextRun (nothing could be scheduled) or
	// RestoreByNone (kill-idle).
	RestoreBy string `json:"restore_by"`
	// RestoreUnit is the systemd timer unit, RestorePID the restore
	// process (so revert can cancel them).
	RestoreUnit string `json:"restore_unit,omitempty"`
	RestorePID  int    `json:"restore_pid,omitempty"`
	// Reversible is false only for kill-idle.
	Reversible bool `json:"reversible"`
	// Packets is how many packets the mitigation's rules have matched so
	// far: for the rate limits, SYNs dropped (nftables counters; List fills
	// it for kernel rules).
	Packets *uint64  `json:"packets,omitempty"`
	DryRun  bool     `json:"dry_run,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}

// Restore records the values a mitigation replaced.
type Restore struct {
	// Config maps a Valkey config parameter to its original value.
	Config map[string]string `json:"config,omitempty"`
	// Sysctls maps a dotted sysctl name to its original value.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// AppliedConfig and AppliedSysctls are the values stormguard set: a
	// value is put back only while it still holds what stormguard set
	// (a Valkey restart or an operator may have changed it since).
	AppliedConfig  map[string]string `json:"applied_config,omitempty"`
	AppliedSysctls map[string]string `json:"applied_sysctls,omitempty"`
	// ValkeyUser and ValkeyTLS let a later run reconnect to restore; the
	// password comes from that run's --password-file / VALKEY_PASSWORD.
	ValkeyUser string `json:"valkey_user,omitempty"`
	ValkeyTLS  bool   `json:"valkey_tls,omitempty"`
}

// stateFile is the on-disk registry.
type stateFile struct {
	Version     int          `json:"version"`
	Mitigations []Mitigation `json:"mitigations"`
}

func newID() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make mitigation id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// loadState reads the state file; a missing file is an empty registry.
func loadState(path string) (stateFile, error) {
	var st stateFile
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stateFile{Version: 1}, nil
	}
	if err != nil {
		return st, fmt.Errorf("read defuse state %s: %w", path, err)
	}
	if len(b) == 0 {
		return stateFile{Version: 1}, nil
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("parse defuse state %s: %w", path, err)
	}
	if st.Version != 1 {
		return st, fmt.Errorf("defuse state %s: unsupported version %d", path, st.Version)
	}
	return st, nil
}

// saveState writes the registry atomically (temp file + rename), so a
// crash never leaves half a file.
func saveState(path string, st stateFile) error {
	st.Version = 1
	// Sort a copy: the caller's slice stays as it was.
	st.Mitigations = append([]Mitigation(nil), st.Mitigations...)
	sort.Slice(st.Mitigations, func(i, j int) bool { return st.Mitigations[i].Applied.Before(st.Mitigations[j].Applied) })
	if st.Mitigations == nil {
		st.Mitigations = []Mitigation{}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode defuse state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".defuse-*.json")
	if err != nil {
		return fmt.Errorf("write defuse state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write defuse state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write defuse state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write defuse state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write defuse state: %w", err)
	}
	return nil
}

// lockState takes an exclusive lock beside the state file, so two
// stormguard runs never restore or record the same thing twice.
func lockState(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open defuse lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock defuse state: %w", err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
