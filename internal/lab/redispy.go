package lab

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RedisPyStrategy runs redis-py (Debian's python3-redis), a pool-based
// client that is not Go: one Python process per instance.
const RedisPyStrategy = "redis-py"

// redisPyMaxInstances bounds the Python processes of a run (~20 MB each).
const redisPyMaxInstances = 64

//go:embed redispy/client.py
var redisPyScript string

func init() { strategies.register(32, RedisPyStrategy, redisPyStrategy{}) }

// redisPyStrategy: each instance is a Python process with one redis.Redis
// (default ConnectionPool and retry settings) shared by its clients'
// threads. The process dials by itself, so its connects are counted in the
// server namespace's kernel counters, as valkey-glide's.
type redisPyStrategy struct{}

func (redisPyStrategy) check(c Config) error {
	switch {
	case !c.netnsKnown():
		return bad("NetNS", "redis-py dials from its own process, where the lab cannot count dials; it counts them in the "+
			"kernel counters of the server's network namespace instead: give {NetNS} or {Spawn}")
	case c.TLS && c.Spawn == nil:
		// An outside server's TLS settings are a tls.Config here, not
		// the files Python's ssl module reads.
		return bad("TLS", "redis-py runs with {TLS} only against the run's own server ({Spawn}), whose CA file it is given")
	case c.SourceAddrs > 1:
		return bad("SourceAddrs", "{SourceAddrs} %d: redis-py dials from its own process, from the address the kernel picks", c.SourceAddrs)
	}
	return nil
}

func (redisPyStrategy) traits(cfg Config) traits {
	// The processes' pipes; their connections are the clients'.
	return traits{connsPerClient: 1, fdsPerInstance: 4, kernelDials: true, ownSource: true}
}

// redisPyProcs is how many Python processes a run starts: one per
// instance, at most redisPyMaxInstances; beyond that, instances share the
// processes (and their pools) round-robin.
func redisPyProcs(cfg Config) int { return max(1, min(cfg.Instances, redisPyMaxInstances)) }

func (redisPyStrategy) instance(ctx context.Context, r *run, k int) (instance, error) {
	n := redisPyProcs(r.cfg)
	r.pyMu.Lock()
	defer r.pyMu.Unlock()
	if r.py == nil {
		r.py = make([]*redisPy, n)
	}
	p := r.py[k%n]
	if p == nil {
		// The process's threads: every client of the instances it serves.
		workers := (r.cfg.Clients + n - 1) / n
		// Process k%n runs on host k%n mod Hosts: with up to
		// redisPyMaxInstances instances, instance k on host k mod Hosts
		// like every other strategy's.
		ns := r.cfg.NetNS
		if len(r.hostNetNS) > 0 {
			ns = r.hostNetNS[(k%n)%len(r.hostNetNS)]
		}
		var err error
		if p, err = startRedisPy(r, ns, workers); err != nil {
			return nil, err
		}
		r.py[k%n] = p
	}
	return libInstance{r, p}, nil
}

// redisPy is one Python process and the PINGs waiting for its answers.
type redisPy struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	done chan struct{}
	mu   sync.Mutex
	seq  uint64
	wait map[uint64]chan error
	wmu  sync.Mutex // serialises writes to in
	stop func()
	// busy holds one token per PING the process has been asked and not
	// yet answered, at most its worker threads: an application thread
	// blocked in r.ping() cannot make its next call, even after the lab
	// counted the call as timed out (redis-py's default has no socket
	// timeout, so the call runs on). Without this bound the lab queued a
	// new PING per client and period behind the blocked ones, and after
	// a TLS kill of 2,000 clients the processes worked through PINGs the
	// lab had given up on long ago.
	busy chan struct{}
}

// redisPyConfig is the first line the Python process reads (JSON): on
// stdin, so that the password is on no command line.
type redisPyConfig struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Workers  int    `json:"workers"`
	TLSCA    string `json:"tls_ca,omitempty"` // the run's CA file
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	Setup    string `json:"setup"`
}

// startRedisPy starts an instance's process inside the network namespace
// ns (the server's, or a client host's) and waits for its "ready" line.
func startRedisPy(r *run, ns string, workers int) (*redisPy, error) {
	host, portStr, err := net.SplitHostPort(r.cfg.Target)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("redis-py: port %q: %w", portStr, err)
	}
	pc := redisPyConfig{Host: host, Port: port, Workers: workers, User: r.cfg.User, Password: r.cfg.Password, Setup: r.cfg.Setup}
	if r.tls != nil {
		pc.TLSCA = r.tls.ca
	}
	first, err := json.Marshal(pc)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("nsenter", "--net="+ns, redisPyPython(), "-c", redisPyScript)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if r.tls != nil {
		if cmd.Env, err = redisPyTLSEnv(os.Environ(), r.tls); err != nil {
			return nil, err
		}
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redis-py: start python3: %w", err)
	}
	if _, err := in.Write(append(first, '\n')); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, fmt.Errorf("redis-py: settings to python3: %w", err)
	}
	p := &redisPy{cmd: cmd, in: in, done: make(chan struct{}), wait: map[uint64]chan error{}, busy: make(chan struct{}, max(1, workers))}
	waitc := make(chan struct{})
	go func() { cmd.Wait(); close(waitc) }()
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			in.Close()
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-waitc
		})
	}
	lines := bufio.NewScanner(outp)
	ready := make(chan error, 1)
	go func() {
		defer close(p.done)
		first := true
		for lines.Scan() {
			line := lines.Text()
			if first {
				first = false
				if !strings.HasPrefix(line, "ready ") {
					ready <- fmt.Errorf("redis-py: unexpected first line %q", line)
					return
				}
				ready <- nil
				continue
			}
			seqStr, rest, _ := strings.Cut(line, " ")
			seq, err := strconv.ParseUint(seqStr, 10, 64)
			if err != nil {
				continue
			}
			var res error
			if msg, ok := strings.CutPrefix(rest, "err "); ok {
				res = errors.New("redis-py: " + msg)
			} else if rest != "ok" {
				res = fmt.Errorf("redis-py: unexpected answer %q", rest)
			}
			p.mu.Lock()
			ch := p.wait[seq]
			delete(p.wait, seq)
			p.mu.Unlock()
			select {
			case <-p.busy: // its thread is free again, answered or not awaited
			default:
			}
			if ch != nil {
				ch <- res
			}
		}
		select {
		case ready <- fmt.Errorf("redis-py: python3 ended: %s", oneLineErr(stderr.String())):
		default:
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			p.stop()
			return nil, err
		}
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, errors.New("redis-py: python3 did not start within 30s")
	}
	return p, nil
}

// redisPyTLSEnv is the Python process's environment with --tls: OpenSSL's
// default trust store (SSL_CERT_FILE, SSL_CERT_DIR) is the run's CA file
// and an empty directory, as in a slim container image with only the
// service's CA. redis-py 4.3.4 builds a new ssl.create_default_context()
// for every connection, which loads the default trust store before it adds
// ssl_ca_certs; with the system's 144 CA certificates a connection costs
// redis-py ~25 ms of CPU here against ~1.7 ms with this one, and 2,000
// clients could not warm up (docs/lab.md, TLS). redis-py's code path is
// unchanged: only what it loads is smaller.
func redisPyTLSEnv(env []string, t *runTLS) ([]string, error) {
	empty := filepath.Join(t.dir, "python-cert-dir")
	if err := os.MkdirAll(empty, 0o700); err != nil {
		return nil, fmt.Errorf("redis-py: trust store directory: %w", err)
	}
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SSL_CERT_FILE=") && !strings.HasPrefix(kv, "SSL_CERT_DIR=") {
			out = append(out, kv)
		}
	}
	return append(out, "SSL_CERT_FILE="+t.ca, "SSL_CERT_DIR="+empty), nil
}

// redisPyPython is the interpreter: Debian's, which python3-redis is
// installed for, ahead of another python3 on PATH (e.g. pyenv's).
func redisPyPython() string {
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return "python3"
}

// oneLineErr keeps the last line of a Python traceback.
func oneLineErr(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "no output (is python3-redis installed? scripts/install-deps.sh)"
	}
	return s
}

func (p *redisPy) ping(ctx context.Context) error {
	// Wait for a free thread (see busy); a client whose call never gets
	// one within its command timeout fails like a blocked call.
	select {
	case p.busy <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.done:
		return errors.New("redis-py: python3 ended")
	}
	ch := make(chan error, 1)
	p.mu.Lock()
	p.seq++
	seq := p.seq
	p.wait[seq] = ch
	p.mu.Unlock()
	p.wmu.Lock()
	_, err := io.WriteString(p.in, strconv.FormatUint(seq, 10)+"\n")
	p.wmu.Unlock()
	if err != nil {
		p.forget(seq)
		<-p.busy // never reached Python
		return fmt.Errorf("redis-py: %w", err)
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		// The PING still runs in Python (redis-py's default has no
		// socket timeout); its late answer is dropped.
		p.forget(seq)
		return ctx.Err()
	case <-p.done:
		return errors.New("redis-py: python3 ended")
	}
}

func (p *redisPy) forget(seq uint64) {
	p.mu.Lock()
	delete(p.wait, seq)
	p.mu.Unlock()
}

func (p *redisPy) close() { p.stop() }
