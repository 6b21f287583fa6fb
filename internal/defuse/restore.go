package defuse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/internal/addr"
)

// What undoes a mitigation at its TTL (restore_by in the state file and in
// `defuse list --json`).
const (
	// RestoreByKernel: nftables set elements time out in the kernel.
	RestoreByKernel = "kernel"
	// RestoreBySystemdTimer: a transient systemd timer runs
	// `stormguard defuse restore-due` at the TTL.
	RestoreBySystemdTimer = "systemd-timer"
	// RestoreByProcess: a detached `stormguard defuse restore-due`
	// process (own session) sleeps until the TTL.
	RestoreByProcess = "process"
	// RestoreByNextRun: neither could be started; the next stormguard
	// run after the TTL restores it.
	RestoreByNextRun = "next-run"
	// RestoreByNone: kill-idle, which cannot be undone.
	RestoreByNone = "none"
)

// RestoreDueCommand is the hidden subcommand (argv after the executable)
// that restores one mitigation at its TTL.
var restoreDueArgs = []string{"defuse", "restore-due"}

// restoreEnv marks a re-executed restorer. The package's init hook runs it
// in any binary that links this package (stormguard itself, and test
// binaries, which know no subcommands), before main.
const restoreEnv = "STORMGUARD_DEFUSE_RESTORE"

// restoreSecretFD is the inherited descriptor carrying the Valkey password
// to a restore process (never argv, never the environment).
const restoreSecretFD = 3

func init() {
	if os.Getenv(restoreEnv) != "1" || len(os.Args) < 3 || os.Args[1] != restoreDueArgs[0] || os.Args[2] != restoreDueArgs[1] {
		return
	}
	os.Exit(restoreMain(os.Args[3:]))
}

// restoreSecret reads the Valkey password: from --password-file (a 0600
// file the systemd timer's service gets; removed once read), else from
// fd 3 when we were spawned as a restore process.
func restoreSecret(args []string) (string, error) {
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == "--password-file" {
			b, err := os.ReadFile(args[i+1])
			if err != nil {
				return "", fmt.Errorf("read restore secret: %w", err)
			}
			return strings.TrimRight(string(b), "\r\n"), nil
		}
	}
	if os.Getenv(restoreEnv) != "1" {
		return "", nil
	}
	f := os.NewFile(restoreSecretFD, "secret")
	if f == nil {
		return "", nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<16))
	if err != nil {
		return "", nil // no secret was passed
	}
	return string(b), nil
}

// RestoreMain runs the restorer (`stormguard defuse restore-due --state
// FILE --id ID [--at TIME] [--password-file F]`) and returns its exit code.
func RestoreMain(args []string) int { return restoreMain(args) }

// restoreMain is the re-executed restorer: --state FILE --id ID, --at the
// expiry recorded at apply (RFC 3339; without it, read from the state
// file), the password (if any) on fd 3 or in --password-file.
func restoreMain(args []string) int {
	var state, id, atArg string
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "--state":
			state = args[i+1]
		case "--id":
			id = args[i+1]
		case "--at":
			atArg = args[i+1]
		}
	}
	if state == "" || id == "" {
		fmt.Fprintln(os.Stderr, "stormguard defuse restore-due: --state and --id are required")
		return 2
	}
	var at time.Time
	if atArg != "" {
		var err error
		if at, err = time.Parse(time.RFC3339Nano, atArg); err != nil {
			fmt.Fprintln(os.Stderr, "stormguard defuse restore-due: --at: "+err.Error())
			return 2
		}
	}
	password, err := restoreSecret(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stormguard defuse restore-due: "+err.Error())
		return 2
	}
	defer func() {
		for i := 0; i+1 < len(args); i += 2 {
			if args[i] == "--password-file" {
				os.Remove(args[i+1])
			}
		}
	}()
	if err := restoreDue(context.Background(), state, id, password, at); err != nil {
		fmt.Fprintln(os.Stderr, time.Now().UTC().Format(time.RFC3339)+" stormguard defuse restore-due "+id+": "+err.Error())
		return 1
	}
	return 0
}

// RestoreDue waits until mitigation id of the state file is due, then
// undoes it (only values still as stormguard set them) and removes its
// entry. It returns at once when the entry is gone (reverted, or restored
// by another run). When the target cannot be reached it retries with
// backoff for up to restoreRetryFor, then leaves the entry for the next
// stormguard run. password is the Valkey password for accept-cap.
func RestoreDue(ctx context.Context, statePath, id, password string) error {
	return restoreDue(ctx, statePath, id, password, time.Time{})
}

// restoreDue is RestoreDue with at, the expiry recorded at apply (zero:
// read it from the state file). A restore process gets at on its command
// line, so it sleeps from the moment it starts until the TTL against that
// absolute wall-clock time, and touches the state file only then.
func restoreDue(ctx context.Context, statePath, id, password string, at time.Time) error {
	m := &Manager{StatePath: statePath, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	var prev time.Duration
	var giveUp time.Time
	for n := 0; ; {
		if err := sleepUntil(ctx, at); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Dir(statePath)); err != nil {
			// The state directory is gone (a test's temporary one):
			// nothing to restore, and locking would recreate it.
			return nil
		}
		later, err := m.restoreOne(ctx, id, password)
		if err == nil {
			if later.IsZero() {
				return nil // restored, or the entry is gone
			}
			at = later // not due yet (no --at, or the entry says later)
			continue
		}
		if giveUp.IsZero() {
			giveUp = time.Now().Add(restoreRetryFor)
		}
		m.log().Warn("defuse: restore-due: will retry", "id", id, "err", err)
		if time.Now().After(giveUp) {
			return fmt.Errorf("restore %s: giving up after %s, the next stormguard run retries: %w", id, restoreRetryFor, err)
		}
		prev = backoff.DefaultGRPC().Delay(n, prev, nil)
		n++
		at = time.Now().Add(prev)
	}
}

// restoreOne undoes mitigation id and removes its state entry, under the
// state lock, once it is due; before that it returns when it will be. It
// handles only id: each mitigation has its own restorer, so another one's
// slow or unreachable target never delays this one (what has no restorer
// is left to the next stormguard run, as before), and it reads no other
// namespace's nftables.
func (m *Manager) restoreOne(ctx context.Context, id, password string) (time.Time, error) {
	unlock, err := lockState(m.statePath())
	if err != nil {
		return time.Time{}, err
	}
	defer unlock()
	st, err := loadState(m.statePath())
	if err != nil {
		return time.Time{}, err
	}
	mt, ok := st.find(id)
	if !ok {
		return time.Time{}, nil
	}
	if m.now().Before(mt.Expires) {
		return mt.Expires, nil
	}
	gone := false
	if mt.NetNS != "" {
		// The namespace is gone, and with it its rules and sysctls.
		_, err := os.Stat(mt.NetNS)
		gone = errors.Is(err, fs.ErrNotExist)
	}
	if !gone {
		if a, err := addr.Parse(mt.Valkey); err == nil && mt.Valkey != "" {
			a.Password = password
			m.Valkey = a
		}
		if err := m.undo(ctx, mt); err != nil {
			return time.Time{}, fmt.Errorf("restore %s (%s): %w", id, mt.Action, err)
		}
	}
	st.remove(id)
	return time.Time{}, saveState(m.statePath(), st)
}

// restoreRetryFor bounds how long a restorer retries an unreachable target.
const restoreRetryFor = 10 * time.Minute

func (st *stateFile) remove(id string) {
	keep := st.Mitigations[:0]
	for _, mt := range st.Mitigations {
		if mt.ID != id {
			keep = append(keep, mt)
		}
	}
	st.Mitigations = keep
}

func (st *stateFile) find(id string) (Mitigation, bool) {
	for _, mt := range st.Mitigations {
		if mt.ID == id {
			return mt, true
		}
	}
	return Mitigation{}, false
}

// scheduleRestore arranges for mt to be undone at its TTL without any
// stormguard process: a transient systemd timer where systemd is PID 1,
// else a detached restore process. It records how in mt.
func (m *Manager) scheduleRestore(mt *Mitigation) {
	if m.scheduleFn != nil {
		m.scheduleFn(mt)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		if mt.KernelExpiry {
			return
		}
		mt.RestoreBy = RestoreByNextRun
		mt.Notes = append(mt.Notes, "no restore could be scheduled ("+err.Error()+"): restored by the next stormguard run after the TTL")
		return
	}
	by := func(s string) {
		if !mt.KernelExpiry {
			mt.RestoreBy = s
		}
	}
	if systemdUsable() {
		unit, err := m.scheduleSystemd(exe, mt)
		if err == nil {
			by(RestoreBySystemdTimer)
			mt.RestoreUnit = unit
			return
		}
		m.log().Warn("defuse: systemd-run failed; using a restore process", "err", err)
	}
	pid, err := m.spawnRestorer(exe, mt)
	if err != nil {
		if !mt.KernelExpiry {
			by(RestoreByNextRun)
			mt.Notes = append(mt.Notes, "no restore could be scheduled ("+err.Error()+"): restored by the next stormguard run after the TTL")
		}
		return
	}
	by(RestoreByProcess)
	mt.RestorePID = pid
}

// systemdUsable reports whether systemd is PID 1 and systemd-run exists
// (sd_booted checks /run/systemd/system the same way).
func systemdUsable() bool {
	if fi, err := os.Stat("/run/systemd/system"); err != nil || !fi.IsDir() {
		return false
	}
	if b, err := os.ReadFile("/proc/1/comm"); err != nil || strings.TrimSpace(string(b)) != "systemd" {
		return false
	}
	_, err := exec.LookPath("systemd-run")
	return err == nil
}

func restoreUnitName(id string) string { return "stormguard-restore-" + id }

func secretPath(statePath, id string) string {
	return filepath.Join(filepath.Dir(statePath), ".restore-"+id+".secret")
}

// systemdRunArgs is the systemd-run command line for mt at now (no secret
// in it: the password, if any, is in a 0600 file named by --password-file).
func systemdRunArgs(exe, statePath string, mt Mitigation, secretFile string, now time.Time) []string {
	secs := max(mt.Expires.Sub(now).Seconds(), 0)
	args := []string{"--quiet", "--collect", "--unit=" + restoreUnitName(mt.ID),
		"--description=stormguard: restore mitigation " + mt.ID + " (" + string(mt.Action) + ") at its TTL",
		"--on-active=" + strconv.FormatFloat(secs, 'f', 3, 64) + "s", "--timer-property=AccuracySec=100ms",
		"--property=Type=oneshot", "--setenv=" + restoreEnv + "=1",
		"--", exe}
	args = append(args, restoreDueArgs...)
	args = append(args, "--state", statePath, "--id", mt.ID)
	if secretFile != "" {
		args = append(args, "--password-file", secretFile)
	}
	return args
}

func (m *Manager) scheduleSystemd(exe string, mt *Mitigation) (string, error) {
	statePath, err := filepath.Abs(m.statePath())
	if err != nil {
		return "", err
	}
	secret := ""
	if m.Valkey.Password != "" && mt.Valkey != "" {
		secret = secretPath(statePath, mt.ID)
		if err := os.WriteFile(secret, []byte(m.Valkey.Password), 0o600); err != nil {
			return "", fmt.Errorf("write restore secret: %w", err)
		}
	}
	out, err := exec.Command("systemd-run", systemdRunArgs(exe, statePath, *mt, secret, m.now())...).CombinedOutput()
	if err != nil {
		if secret != "" {
			os.Remove(secret)
		}
		return "", fmt.Errorf("systemd-run: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return restoreUnitName(mt.ID) + ".timer", nil
}

// spawnRestorer starts the detached restore process: a re-exec of this
// executable in its own session (so it survives the parent's SIGKILL and
// the terminal's hangup), stdio on /dev/null, the password on fd 3.
func (m *Manager) spawnRestorer(exe string, mt *Mitigation) (int, error) {
	statePath, err := filepath.Abs(m.statePath())
	if err != nil {
		return 0, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("restore process: %w", err)
	}
	defer r.Close()
	pw := ""
	if mt.Valkey != "" {
		pw = m.Valkey.Password
	}
	// A password fits the pipe's buffer: write it all before the child
	// runs, then close our end so the child reads EOF.
	if _, err := io.WriteString(w, pw); err != nil {
		w.Close()
		return 0, fmt.Errorf("restore process: %w", err)
	}
	w.Close()
	// --at: the process sleeps until this wall-clock instant from the
	// moment it starts, without waiting for our state lock first.
	cmd := exec.Command(exe, append(append([]string{}, restoreDueArgs...), "--state", statePath, "--id", mt.ID,
		"--at", mt.Expires.UTC().Format(time.RFC3339Nano))...)
	cmd.Env = append(os.Environ(), restoreEnv+"=1")
	// Its errors go to a log beside the state file (nobody reads its
	// stderr once we are gone).
	if lf, err := os.OpenFile(filepath.Join(filepath.Dir(statePath), "defuse-restore.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
		defer lf.Close()
		cmd.Stderr = lf
	}
	cmd.ExtraFiles = []*os.File{r} // fd 3
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start restore process: %w", err)
	}
	pid := cmd.Process.Pid
	// Reap it if we are still around when it exits; nothing waits on it
	// otherwise (init adopts it when we exit first).
	go func() { _ = cmd.Wait() }()
	return pid, nil
}

// cancelRestore stops mt's scheduled restorer, if any: the mitigation was
// reverted or restored by someone else.
func (m *Manager) cancelRestore(mt Mitigation) {
	switch {
	case mt.RestoreUnit != "":
		_ = exec.Command("systemctl", "stop", restoreUnitName(mt.ID)+".timer", restoreUnitName(mt.ID)+".service").Run()
		os.Remove(secretPath(m.statePath(), mt.ID))
	case mt.RestorePID > 0:
		if mt.RestorePID > 0 && isRestorerOf(mt.RestorePID, mt.ID) {
			_ = syscall.Kill(mt.RestorePID, syscall.SIGTERM)
		}
	}
}

// isRestorerOf checks that pid is still the restore process of id (pids
// are reused).
func isRestorerOf(pid int, id string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	has := map[string]bool{}
	for _, a := range args {
		has[a] = true
	}
	return has[restoreDueArgs[1]] && has[id]
}

// loadStateLocked reads the state file under its lock.
func loadStateLocked(path string) (stateFile, error) {
	unlock, err := lockState(path)
	if err != nil {
		return stateFile{}, err
	}
	defer unlock()
	return loadState(path)
}
