package sandbox

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stormguard/stormguard/internal/netns"
)

// Options configure a sandbox. Zero values mean defaults.
type Options struct {
	// Sysctls are written inside the namespace before Valkey starts, e.g.
	// {"net.core.somaxconn": "64", "net.ipv4.tcp_syncookies": "0"}.
	Sysctls map[string]string
	// Port is the port valkey-server listens on inside the namespace (6379).
	Port int
	// ValkeyArgs are extra valkey-server arguments, e.g.
	// []string{"--maxclients", "100", "--tcp-backlog", "128"}.
	ValkeyArgs []string
	// NoValkey creates only the namespace.
	NoValkey bool
	// ValkeyBinary overrides the server binary (valkey-server, then redis-server).
	ValkeyBinary string
	// StartTimeout bounds waiting for Valkey to answer PING (10s).
	StartTimeout time.Duration
	// ClientTLS, when set, makes Ping and Dial speak TLS with it (a server
	// started with tls-port only, through ValkeyArgs).
	ClientTLS *tls.Config
	// ValkeyPrefix is a command that execs valkey-server, run inside the
	// namespace, e.g. []string{"prlimit", "--nofile=128"} for a low fd
	// limit. It must exec (not fork) so ValkeyPID stays the server's PID.
	ValkeyPrefix []string
}

// Sandbox is a network namespace with an optional valkey-server inside.
type Sandbox struct {
	// Name is the namespace name (ip netns NAME).
	Name string
	// NetNS is the namespace path, /var/run/netns/NAME.
	NetNS string
	// Port is Valkey's port inside the namespace.
	Port int
	// Dir is a scratch directory holding Valkey's log and config.
	Dir string

	opts   Options
	mu     sync.Mutex
	valkey *exec.Cmd
	waitc  chan error
	closed bool
	hosts  []Host
	// line delays the hosts' links where netem is missing; rttMethod
	// says which of the two AddHosts used.
	line      *DelayLine
	rttMethod string
	// bindExtra is another address Valkey listens on (the hosts' link).
	bindExtra string
}

var seq atomic.Int64 // names only; not state shared between sandboxes

// Available reports why sandboxes cannot be made here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("needs the ip command (Debian package iproute2)")
	}
	if _, err := ValkeyBinary(); err != nil {
		return err
	}
	return nil
}

// ValkeyBinary finds valkey-server (or redis-server).
func ValkeyBinary() (string, error) {
	for _, b := range []string{"valkey-server", "redis-server"} {
		if p, err := exec.LookPath(b); err == nil {
			return p, nil
		}
	}
	return "", errors.New("needs valkey-server (Debian bookworm-backports package valkey-server)")
}

// New creates the namespace, applies sysctls and starts Valkey.
func New(ctx context.Context, opts Options) (*Sandbox, error) {
	if opts.Port == 0 {
		opts.Port = 6379
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 10 * time.Second
	}
	removeStale()
	name := fmt.Sprintf("sg-%d-%d", os.Getpid(), seq.Add(1))
	s := &Sandbox{Name: name, NetNS: "/var/run/netns/" + name, Port: opts.Port, opts: opts}
	dir, err := os.MkdirTemp("", "stormguard-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("sandbox scratch dir: %w", err)
	}
	s.Dir = dir
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create network namespace %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.CommandContext(ctx, "ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		s.Close()
		return nil, fmt.Errorf("bring up loopback in %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	for k, v := range opts.Sysctls {
		if err := s.SetSysctl(k, v); err != nil {
			s.Close()
			return nil, err
		}
	}
	if !opts.NoValkey {
		if err := s.StartValkey(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// SetSysctl writes a sysctl (dotted name) inside the namespace.
func (s *Sandbox) SetSysctl(key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return netns.Do(s.NetNS, func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("set %s=%s in %s: %w", key, value, s.Name, err)
		}
		return nil
	})
}

// Sysctl reads a sysctl inside the namespace.
func (s *Sandbox) Sysctl(key string) (string, error) {
	var v string
	err := netns.Do(s.NetNS, func() error {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

// Addr is Valkey's address as seen from inside the namespace.
func (s *Sandbox) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// LogPath is valkey-server's log file.
func (s *Sandbox) LogPath() string { return filepath.Join(s.Dir, "valkey.log") }

// StartValkey starts valkey-server in the namespace and waits for PING.
func (s *Sandbox) StartValkey(ctx context.Context) error {
	bin := s.opts.ValkeyBinary
	if bin == "" {
		var err error
		if bin, err = ValkeyBinary(); err != nil {
			return err
		}
	}
	args := append([]string{"netns", "exec", s.Name}, s.opts.ValkeyPrefix...)
	args = append(args, bin,
		"--port", strconv.Itoa(s.Port), "--bind", strings.TrimSpace("127.0.0.1 -::1 "+s.bindExtra),
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--protected-mode", "no", "--dir", s.Dir, "--logfile", s.LogPath())
	args = append(args, s.opts.ValkeyArgs...)
	cmd := exec.Command("ip", args...)
	// Own process group, so Close and Kill reach the server itself.
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start valkey-server in %s: %w", s.Name, err)
	}
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	s.mu.Lock()
	s.valkey, s.waitc = cmd, waitc
	s.mu.Unlock()
	return s.WaitReady(ctx, s.opts.StartTimeout)
}

// WaitReady waits until Valkey answers PING inside the namespace.
func (s *Sandbox) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		s.mu.Lock()
		waitc := s.waitc
		s.mu.Unlock()
		select {
		case err := <-waitc:
			waitc <- err
			return fmt.Errorf("valkey-server in %s exited: %v; log: %s", s.Name, err, s.logTail())
		default:
		}
		if last = s.Ping(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("valkey-server in %s did not answer PING within %s: %v; log: %s", s.Name, timeout, last, s.logTail())
}

// Ping sends one inline PING over a fresh connection inside the namespace.
func (s *Sandbox) Ping(ctx context.Context) error {
	c, err := s.Dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Dial opens a TCP connection to Valkey from inside the namespace. The
// socket stays in the namespace; use it from any goroutine.
func (s *Sandbox) Dial(ctx context.Context) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(s.NetNS, func() error {
		var d net.Dialer
		d.Timeout = 2 * time.Second
		var err error
		c, err = d.DialContext(ctx, "tcp", s.Addr())
		return err
	})
	if err != nil || s.opts.ClientTLS == nil {
		return c, err
	}
	tc := tls.Client(c, s.opts.ClientTLS)
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS handshake with valkey-server in %s: %w", s.Name, err)
	}
	return tc, nil
}

// Command returns a command that runs inside the namespace.
func (s *Sandbox) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", s.Name, name}, args...)...)
}

// ValkeyPID returns the server's PID (the ip netns exec process execs it).
func (s *Sandbox) ValkeyPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.valkey == nil || s.valkey.Process == nil {
		return 0
	}
	return s.valkey.Process.Pid
}

// Signal sends sig to valkey-server (SIGSTOP freezes it, SIGCONT thaws).
func (s *Sandbox) Signal(sig syscall.Signal) error {
	pid := s.ValkeyPID()
	if pid == 0 {
		return errors.New("valkey-server not running")
	}
	return syscall.Kill(-pid, sig)
}

// StopValkey kills valkey-server and waits for it to exit.
func (s *Sandbox) StopValkey() error {
	s.mu.Lock()
	cmd, waitc := s.valkey, s.waitc
	s.valkey, s.waitc = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-waitc:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("valkey-server in %s did not exit", s.Name)
	}
	return nil
}

// Close stops Valkey and removes the namespace and scratch directory.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.StopValkey()
	if e := s.removeHosts(); e != nil && err == nil {
		err = e
	}
	killNamespaceProcs(s.NetNS)
	if out, e := exec.Command("ip", "netns", "del", s.Name).CombinedOutput(); e != nil && err == nil {
		err = fmt.Errorf("delete network namespace %s: %v: %s", s.Name, e, strings.TrimSpace(string(out)))
	}
	os.RemoveAll(s.Dir)
	return err
}

func (s *Sandbox) logTail() string {
	b, _ := os.ReadFile(s.LogPath())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}

// killNamespaceProcs kills processes still living in the namespace (a
// benchmark a test started, say), so the namespace can go.
func killNamespaceProcs(nsPath string) {
	want, err := os.Stat(nsPath)
	if err != nil {
		return
	}
	wst, ok := want.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		fi, err := os.Stat(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == wst.Ino && st.Dev == wst.Dev {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeStale deletes sg-<pid>-<n> namespaces whose creator is gone.
func removeStale() {
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		parts := strings.Split(e.Name(), "-")
		if len(parts) != 3 || parts[0] != "sg" {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue
		}
		killNamespaceProcs("/var/run/netns/" + e.Name())
		_ = exec.Command("ip", "netns", "del", e.Name()).Run()
	}
}
