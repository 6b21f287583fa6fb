package sandboxtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/sandbox"
)

// HolderEnv tells a re-run test binary to act as a connection holder.
const HolderEnv = "STORMGUARD_CONN_HOLDER"

// RunConnHolder is the body of a package's holder "test" (the os/exec
// TestHelperProcess pattern). Run again by HoldConns with
// HolderEnv=NETNS,ADDR,N, it opens N connections to ADDR from inside NETNS,
// prints "ready" and holds them until stdin closes. Without HolderEnv it
// skips. Holding thousands of connections in a second process keeps them
// outside the benchmarked process's fd limit and CPU accounting.
func RunConnHolder(t *testing.T) {
	spec := os.Getenv(HolderEnv)
	if spec == "" {
		t.Skip("helper process for benchmarks that hold many connections")
	}
	f := strings.Split(spec, ",")
	if len(f) != 3 {
		t.Fatalf("bad %s=%q", HolderEnv, spec)
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		t.Fatalf("bad %s=%q", HolderEnv, spec)
	}
	var conns []net.Conn
	err = netns.Do(f[0], func() error {
		d := net.Dialer{Timeout: 10 * time.Second}
		for len(conns) < n {
			c, err := d.Dial("tcp", f[1])
			if err != nil {
				return fmt.Errorf("connection %d of %d: %w", len(conns)+1, n, err)
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

// HoldConns re-runs the test binary as holderTest (a test that calls
// RunConnHolder) with n connections to sb's Valkey and waits until they are
// open. The holder exits when the test ends.
func HoldConns(tb testing.TB, sb *sandbox.Sandbox, n int, holderTest string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+holderTest+"$", "-test.bench=^$", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%d", HolderEnv, sb.NetNS, sb.Addr(), n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start connection holder: %v", err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if lines.Text() == "ready" {
			go io.Copy(io.Discard, out)
			return
		}
	}
	tb.Fatalf("connection holder for %d connections exited before it was ready", n)
}

// DialFrom opens n connections to sb's Valkey from source address src
// inside its namespace (any 127/8 address is local on lo, so binding one
// gives a distinct client address without adding it) and closes them when
// the test ends.
func DialFrom(t testing.TB, sb *sandbox.Sandbox, src string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	err := netns.Do(sb.NetNS, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		for i := range n {
			c, err := d.Dial("tcp", sb.Addr())
			if err != nil {
				return fmt.Errorf("dial %d from %s: %w", i, src, err)
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return conns
}

// FreePort returns a loopback port with nothing listening on it (a dial
// there is refused at once).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}
