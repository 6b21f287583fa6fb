//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "clientcost:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: clientcost ping|dialfull|dialok PORT N")
	}
	port, err := strconv.Atoi(args[1])
	if err != nil || port < 1 || port > 65535 {
		return fmt.Errorf("bad port %q", args[1])
	}
	n, err := strconv.Atoi(args[2])
	if err != nil || n < 1 || n > 20000 {
		return fmt.Errorf("bad N %q (1..20000)", args[2])
	}
	switch args[0] {
	case "ping":
		return pings(port, n)
	case "dialfull":
		return dialFull(port, n)
	case "dialok":
		cpu, wall, fds, err := connects(port, n)
		defer closeAll(fds)
		if err != nil {
			return err
		}
		report("dialok", "connects accepted", n, cpu, wall)
		return nil
	}
	return fmt.Errorf("unknown mode %q", args[0])
}

// processCPU is this process's user + system CPU so far. The kernel has
// no IRQ time accounting here (CONFIG_IRQ_TIME_ACCOUNTING unset on the
// lab's host), so the softirq work a syscall does on its way out (on
// loopback: the peer's receive path) is charged to it.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func report(mode, what string, n int, cpu, wall time.Duration) {
	fmt.Printf("%s: %d %s, client CPU %.2f µs each, wall %.2f µs each\n", mode, n, what,
		float64(cpu.Nanoseconds())/1e3/float64(n), float64(wall.Nanoseconds())/1e3/float64(n))
}

// pings holds n connections and has each send a PING and read its
// answer, all at once, five rounds (bounded: 5n round trips, each with a
// 5 s deadline).
func pings(port, n int) error {
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	rds := make([]*bufio.Reader, 0, n)
	for range n {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		conns, rds = append(conns, c), append(rds, bufio.NewReader(c))
	}
	admin, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer admin.Close()
	adm := bufio.NewReader(admin)
	s0, err := serverCPU(admin, adm)
	if err != nil {
		return err
	}
	const rounds = 5
	errs := make(chan error, n)
	c0, w0 := processCPU(), time.Now()
	for range rounds {
		var wg sync.WaitGroup
		for i := range conns {
			wg.Add(1)
			go func(c net.Conn, rd *bufio.Reader) {
				defer wg.Done()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write([]byte("PING\r\n")); err != nil {
					errs <- fmt.Errorf("write: %w", err)
					return
				}
				if _, err := rd.ReadString('\n'); err != nil {
					errs <- fmt.Errorf("read: %w", err)
				}
			}(conns[i], rds[i])
		}
		wg.Wait()
		select {
		case err := <-errs:
			return err
		default:
		}
	}
	cpu, wall := processCPU()-c0, time.Since(w0)
	s1, err := serverCPU(admin, adm)
	if err != nil {
		return err
	}
	report("ping", "round trips", rounds*n, cpu, wall)
	fmt.Printf("ping: valkey-server's main thread %.2f µs per PING (INFO cpu; one INFO cpu per measurement)\n",
		(s1-s0).Seconds()*1e6/float64(rounds*n))
	return nil
}

// serverCPU reads Valkey's main-thread CPU (used_cpu_sys_main_thread +
// used_cpu_user_main_thread) with INFO cpu on the admin connection.
func serverCPU(c net.Conn, rd *bufio.Reader) (time.Duration, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("INFO cpu\r\n")); err != nil {
		return 0, fmt.Errorf("INFO cpu: %w", err)
	}
	head, err := rd.ReadString('\n')
	if err != nil || len(head) < 2 || head[0] != '$' {
		return 0, fmt.Errorf("INFO cpu: reply %q: %v", head, err)
	}
	size, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil || size < 0 || size > 1<<20 {
		return 0, fmt.Errorf("INFO cpu: reply length %q", head)
	}
	body := make([]byte, size+2)
	if _, err := io.ReadFull(rd, body); err != nil {
		return 0, fmt.Errorf("INFO cpu: %w", err)
	}
	var total float64
	found := 0
	for _, line := range strings.Split(string(body), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys_main_thread" || k == "used_cpu_user_main_thread") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("INFO cpu: %s %q", k, v)
			}
			total += f
			found++
		}
	}
	if found != 2 {
		return 0, errors.New("INFO cpu: no main-thread CPU times (Valkey 7+ has them)")
	}
	return time.Duration(total * float64(time.Second)), nil
}

// dialFull listens on port with the default backlog, never accepts,
// fills its accept queue and then makes n more connects, whose SYNs the
// full queue drops.
func dialFull(port, n int) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer l.Close()
	_, _, fill, err := connects(port, 4200) // more than any backlog (somaxconn 4096)
	defer closeAll(fill)
	if err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond) // the fill's handshakes are done
	cpu, wall, fds, err := connects(port, n)
	defer closeAll(fds)
	if err != nil {
		return err
	}
	report("dialfull", "connects to a full accept queue", n, cpu, wall)
	return nil
}

// connects makes n non-blocking connect() calls to 127.0.0.1:port, one
// after another, and returns the CPU and wall time they took.
func connects(port, n int) (cpu, wall time.Duration, fds []int, err error) {
	sa := &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	c0, w0 := processCPU(), time.Now()
	for range n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, 0, fds, fmt.Errorf("socket: %w", err)
		}
		fds = append(fds, fd)
		if err := syscall.Connect(fd, sa); err != nil && !errors.Is(err, syscall.EINPROGRESS) {
			return 0, 0, fds, fmt.Errorf("connect: %w", err)
		}
	}
	return processCPU() - c0, time.Since(w0), fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		_ = syscall.Close(fd)
	}
}
