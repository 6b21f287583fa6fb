package main

import (
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// openPTY opens a pseudo-terminal pair: writes to the returned tty come out
// of master, as they would on a user's screen.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		sandboxtest.SkipOrFail(t, "no pseudo-terminals here: "+err.Error())
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("open pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// TestCheckProgressOnTerminal runs check with stderr on a real
// pseudo-terminal: the progress line appears there, is erased at the end,
// and stdout (a pipe) carries only the findings.
func TestCheckProgressOnTerminal(t *testing.T) {
	master, tty := openPTY(t)
	if !isTTY(tty) {
		t.Fatal("the pty slave is not seen as a terminal")
	}
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(master) // ends with EIO once the slave is closed
		got <- string(b)
	}()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	if isTTY(outW) {
		t.Fatal("a pipe is seen as a terminal")
	}
	// role client: a kernel-only audit, whatever servers run on this host
	// (a server-role check would discover and audit them).
	o := checkOpts{format: "json", failOn: "critical", role: "client", window: 600 * time.Millisecond, timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stdout := make(chan string, 1)
	go func() { b, _ := io.ReadAll(outR); stdout <- string(b) }()
	err = runCheck(ctx, outW, tty, o)
	outW.Close()
	if c := exitCode(err); c == exitUsage {
		t.Fatalf("check: %v", err)
	}
	tty.Close()
	var screen string
	select {
	case screen = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("reading the terminal did not finish")
	}
	if !strings.Contains(screen, "stormguard check: counting connections and drops over the 600ms window … ") {
		t.Errorf("no progress line on the terminal: %q", screen)
	}
	if !strings.HasSuffix(screen, "\r\033[K") {
		t.Errorf("progress line not erased at the end: %q", screen)
	}
	if out := <-stdout; strings.Contains(out, "\r") || !strings.HasPrefix(strings.TrimSpace(out), "{") {
		t.Errorf("stdout got more than the JSON findings: %q", out)
	}
}
