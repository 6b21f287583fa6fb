package main

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fullListener returns a loopback port whose accept queue is full: a
// listen(2) backlog of 0 holds one connection, which we make and never
// accept, so the kernel drops every further SYN, like a blackholed or
// unroutable address, but without sending traffic anywhere.
func fullListener(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrInet4).Port
	filler, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	return port
}

func TestSampleUnansweredConnectIsPrompt(t *testing.T) {
	port := fullListener(t)
	_, msg, code, took := runCLI(t, "sample", "--valkey", "127.0.0.1:"+strconv.Itoa(port))
	if code != exitUsage {
		t.Fatalf("exit %d (%q), want %d", code, msg, exitUsage)
	}
	// Either the connect attempt's own timeout or the sample's deadline
	// ends the wait (a race under load); both must say the same thing.
	if !strings.Contains(msg, "no answer within") || !strings.Contains(msg, strconv.Itoa(port)) || strings.Contains(msg, "\n") {
		t.Fatalf("message %q; want one line naming the address and the timeout", msg)
	}
	if took > hangBound {
		t.Fatalf("took %s; an unanswered connect must not hang", took)
	}
	t.Logf("%s after %s", msg, took.Round(time.Millisecond))
}
