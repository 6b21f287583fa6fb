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
		return errors.New("usage: clientcost ping|dialfull|dialok|dialrefused|handshake|godial|synwave|synbatch|startgap|accepts|fdstall|labdial PORT N")
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
	case "dialrefused":
		return dialRefused(port, n)
	case "handshake":
		return handshake(port, n)
	case "godial":
		return goDials(port, n)
	case "synwave":
		return synWave(port, n)
	case "synbatch":
		return synBatch(port, n)
	case "startgap":
		return startGap(port, time.Duration(n)*time.Millisecond)
	case "accepts":
		return acceptRounds(port, n)
	case "fdstall":
		return fdStall(port, n)
	case "labdial":
		return labDials(port, n)
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

// dialRefused makes n connects to port, where nothing listens: on
// loopback the SYN is answered by a RST on the connecting CPU, as a
// restarting server's port answers a fleet's redials.
func dialRefused(port, n int) error {
	sa := &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	refused := 0
	c0, w0 := processCPU(), time.Now()
	for range n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		err = syscall.Connect(fd, sa)
		if errors.Is(err, syscall.EINPROGRESS) {
			// The RST came back in the same syscall's softirq: the
			// socket's error says so.
			v, gerr := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
			if gerr == nil {
				err = syscall.Errno(v)
			}
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			refused++
		}
		_ = syscall.Close(fd)
	}
	cpu, wall := processCPU()-c0, time.Since(w0)
	if refused != n {
		return fmt.Errorf("dialrefused: %d of %d connects refused (is something listening on %d?)", refused, n, port)
	}
	report("dialrefused", "connects refused", n, cpu, wall)
	return nil
}

// handshake splits a loopback handshake's cost on the connecting CPU:
// n connects to a listener with TCP_DEFER_ACCEPT (the final ACK is
// dropped, the request kept: SYN, SYN-ACK, ACK) and then a PING written
// on each (the data segment creates the server's socket, as a PING does
// after its final ACK was dropped at a full accept queue), against n
// connects to a plain listener (the whole handshake) and a PING on each
// (data only). Neither listener accepts (backlog 4096: somaxconn must
// allow n).
func handshake(port, n int) error {
	var cost [4]time.Duration
	var wall [4]time.Duration
	for i, deferAccept := range []bool{true, false} {
		l, err := listen(port+i, deferAccept)
		if err != nil {
			return err
		}
		c, w, fds, err := connects(port+i, n)
		if err != nil {
			closeAll(fds)
			_ = syscall.Close(l)
			return err
		}
		time.Sleep(50 * time.Millisecond) // every handshake's ACK is in
		c2, w2, err := writePing(fds)
		closeAll(fds)
		_ = syscall.Close(l)
		if err != nil {
			return err
		}
		cost[2*i], wall[2*i], cost[2*i+1], wall[2*i+1] = c, w, c2, w2
	}
	report("handshake", "connects, final ACK dropped (TCP_DEFER_ACCEPT)", n, cost[0], wall[0])
	report("handshake", "PINGs that create the server's socket", n, cost[1], wall[1])
	report("handshake", "connects, whole handshake", n, cost[2], wall[2])
	report("handshake", "PINGs on established connections", n, cost[3], wall[3])
	return nil
}

// listen opens a listening socket on 127.0.0.1:port with backlog 4096,
// with TCP_DEFER_ACCEPT (5 s) if deferAccept.
func listen(port int, deferAccept bool) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if deferAccept {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 5); err != nil {
			_ = syscall.Close(fd)
			return 0, fmt.Errorf("TCP_DEFER_ACCEPT: %w", err)
		}
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		_ = syscall.Close(fd)
		return 0, fmt.Errorf("bind: %w", err)
	}
	if err := syscall.Listen(fd, 4096); err != nil {
		_ = syscall.Close(fd)
		return 0, fmt.Errorf("listen: %w", err)
	}
	return fd, nil
}

// writePing writes a PING on every fd and returns the CPU and wall time.
func writePing(fds []int) (cpu, wall time.Duration, err error) {
	ping := []byte("PING\r\n")
	c0, w0 := processCPU(), time.Now()
	for _, fd := range fds {
		if _, err := syscall.Write(fd, ping); err != nil {
			return 0, 0, fmt.Errorf("write: %w", err)
		}
	}
	return processCPU() - c0, time.Since(w0), nil
}

// goDials times the lab client's own dial (net.Dialer, as its raw
// clients redial) n times one after another: to port (a server that
// accepts: the connection is closed at once) and to port+1000, where
// nothing listens (refused, as a restarting server's port answers). The
// ratio of the two is what the model's refused dial costs the client
// side against an accepted one.
func goDials(port, n int) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	for _, p := range []int{port, port + 1000} {
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		refused := 0
		c0, w0 := processCPU(), time.Now()
		for range n {
			c, err := d.Dial("tcp", addr)
			if err == nil {
				_ = c.Close()
				continue
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("dial %s: %w", addr, err)
			}
			refused++
		}
		cpu, wall := processCPU()-c0, time.Since(w0)
		what := "net.Dialer dials accepted (closed at once)"
		if p != port {
			what = "net.Dialer dials refused"
			if refused != n {
				return fmt.Errorf("godial: %d of %d dials to %s refused", refused, n, addr)
			}
		} else if refused != 0 {
			return fmt.Errorf("godial: %d dials to %s refused (is the server up?)", refused, addr)
		}
		report("godial", what, n, cpu, wall)
	}
	return nil
}

// synWave fills a listener's accept queue (never accepting), makes n
// connects whose SYNs the full queue drops, all within a few ms, and
// waits 1.5 s: their first retransmits fire together on one tick of the
// timer wheel (~1 s later) and go into this CPU's loopback backlog before
// NET_RX drains it. It prints the CPUs' softnet_stat "dropped" counts
// over the wait: with n above net.core.netdev_max_backlog, the tick's
// SYNs beyond it are dropped there (simulate's --netdev-backlog).
func synWave(port, n int) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer l.Close()
	_, _, fill, err := connects(port, 4200)
	defer closeAll(fill)
	if err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond)
	before, err := softnetDropped()
	if err != nil {
		return err
	}
	_, wall, fds, err := connects(port, n)
	defer closeAll(fds)
	if err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond)
	after, err := softnetDropped()
	if err != nil {
		return err
	}
	fmt.Printf("synwave: %d SYNs dropped at a full accept queue within %v; softnet_stat dropped over the next 1.5 s:", n, wall.Round(time.Microsecond))
	for i := range after {
		if i < len(before) {
			fmt.Printf(" cpu%d +%d", i, after[i]-before[i])
		}
	}
	fmt.Println()
	return nil
}

// synBatch: how the kernel admits one timer tick's SYN retransmits. A
// listener with backlog 128 (accept queue limit 128: it holds 129) that
// accepts nothing is filled; n connects made within a few ms have their
// SYNs dropped at the full queue; 0.5 s later the listener accepts (and
// closes) everything queued, so the queue is empty when the n SYNs are
// retransmitted together ~1 s after they were sent. If the kernel
// handles that tick's SYNs one after another, each with its handshake,
// only 129 connects complete (the later SYNs find the queue full again).
// If it handles the tick as a batch — every SYN answered before any
// final ACK arrives — every one of the n connects completes (the client
// sees ESTABLISHED) while only 129 connections reach the accept queue:
// the rest's final ACKs overflow. It prints how many connects completed
// 1.4 s after the wave was sent, and the queue's connections then.
func synBatch(port, n int) error {
	lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer syscall.Close(lfd)
	if err := syscall.Bind(lfd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := syscall.Listen(lfd, 128); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	_, _, fill, err := connects(port, 129)
	defer closeAll(fill)
	if err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond)
	_, wall, fds, err := connects(port, n)
	defer closeAll(fds)
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	drained, err := drain(lfd)
	if err != nil {
		return err
	}
	time.Sleep(900 * time.Millisecond) // the SYNs' first retransmit is due ~1 s after they were sent
	done := 0
	for _, fd := range fds {
		if _, err := syscall.Getpeername(fd); err == nil {
			done++
		}
	}
	queued, err := drain(lfd)
	if err != nil {
		return err
	}
	fmt.Printf("synbatch: %d SYNs dropped at a full queue within %v, %d queued connections accepted 0.5 s later; 1.4 s after the wave: %d of %d connects completed, %d connections in the accept queue\n",
		n, wall.Round(time.Microsecond), drained, done, n, queued)
	return nil
}

// drain accepts (and closes) every connection in lfd's accept queue.
func drain(lfd int) (int, error) {
	if err := syscall.SetNonblock(lfd, true); err != nil {
		return 0, fmt.Errorf("nonblock: %w", err)
	}
	n := 0
	for {
		fd, _, err := syscall.Accept(lfd)
		if errors.Is(err, syscall.EAGAIN) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("accept: %w", err)
		}
		_ = syscall.Close(fd)
		n++
	}
}

// softnetDropped reads /proc/net/softnet_stat's second column (packets
// dropped because the CPU's backlog was full), one per CPU.
func softnetDropped() ([]int64, error) {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return nil, fmt.Errorf("softnet_stat: %w", err)
	}
	var out []int64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("softnet_stat: %q: %w", f[1], err)
		}
		out = append(out, v)
	}
	return out, nil
}

// startGap probes port (where a valkey-server is about to start) with
// dials 100 µs apart for up to limit: the first that connects marks the
// kernel's listening socket (a restarted server's accept queue takes
// handshakes from then on), and its PING's answer marks Valkey's event
// loop running. It prints the gap: the time a restarting server's queue
// of somaxconn + 1 fills while nothing accepts.
func startGap(port int, limit time.Duration) error {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		c, err := net.DialTimeout("tcp", addr, 50*time.Millisecond)
		if err != nil {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		defer c.Close()
		listening := time.Now()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return fmt.Errorf("startgap: write: %w", err)
		}
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			return fmt.Errorf("startgap: read: %w", err)
		}
		fmt.Printf("startgap: first connect to the listening port -> its PING answered: %.2f ms\n",
			float64(time.Since(listening).Microseconds())/1000)
		return nil
	}
	return fmt.Errorf("startgap: nothing listened on %s within %s", addr, limit)
}

// acceptRounds measures valkey-server's main-thread CPU (INFO cpu) per
// connection it accepts, per first PING on a new connection, and per
// client CLIENT KILL frees, twice: on the server as it started (a
// restart's fresh process) and again after the kill freed the first
// round's clients (a kill's redials, into memory the server has used
// before). The connects come in raw bursts of acceptBatch, so that the
// event loop accepts up to its per-turn cap, as in a storm.
func acceptRounds(port, n int) error {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	admin, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("accepts: dial: %w", err)
	}
	defer admin.Close()
	adm := bufio.NewReader(admin)
	for _, round := range []string{"fresh", "after kill"} {
		c0, err := serverCPU(admin, adm)
		if err != nil {
			return err
		}
		var fds []int
		for len(fds) < n {
			_, _, b, err := connects(port, min(acceptBatch, n-len(fds)))
			fds = append(fds, b...)
			if err != nil {
				closeAll(fds)
				return err
			}
			if err := waitInfo(admin, adm, "clients", "connected_clients", int64(len(fds)+1)); err != nil {
				closeAll(fds)
				return err
			}
		}
		c1, err := serverCPU(admin, adm)
		if err == nil {
			err = firstPings(admin, adm, fds)
		}
		var c2, c3 time.Duration
		if err == nil {
			c2, err = serverCPU(admin, adm)
		}
		if err == nil {
			err = command(admin, adm, "CLIENT KILL TYPE normal")
		}
		if err == nil {
			c3, err = serverCPU(admin, adm)
		}
		closeAll(fds)
		if err != nil {
			return err
		}
		us := func(d time.Duration) float64 { return d.Seconds() * 1e6 / float64(n) }
		fmt.Printf("accepts (%s): %d connections: valkey-server main thread %.2f µs per accept, %.2f µs per first PING, %.2f µs per client killed (INFO cpu; INFO polls included)\n",
			round, n, us(c1-c0), us(c2-c1), us(c3-c2))
	}
	return nil
}

// acceptBatch is how many raw connects acceptRounds makes at once: well
// inside the measurement namespace's somaxconn (4096), so none is dropped.
const acceptBatch = 1000

// firstPings writes one inline PING on every raw connection and waits
// until the server has processed them all.
func firstPings(admin net.Conn, adm *bufio.Reader, fds []int) error {
	before, err := infoField(admin, adm, "stats", "total_commands_processed")
	if err != nil {
		return err
	}
	for _, fd := range fds {
		if _, err := syscall.Write(fd, []byte("PING\r\n")); err != nil {
			return fmt.Errorf("accepts: write PING: %w", err)
		}
	}
	// + 1: the INFO stats of this wait's first poll counts as well.
	return waitInfo(admin, adm, "stats", "total_commands_processed", before+int64(len(fds))+1)
}

// waitInfo polls INFO section every 2 ms until field reaches want (10 s
// at most).
func waitInfo(admin net.Conn, adm *bufio.Reader, section, field string, want int64) error {
	end := time.Now().Add(10 * time.Second)
	for {
		v, err := infoField(admin, adm, section, field)
		if err != nil || v >= want {
			return err
		}
		if time.Now().After(end) {
			return fmt.Errorf("accepts: %s %d, want %d within 10 s", field, v, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// infoField reads one integer field of INFO section.
func infoField(admin net.Conn, adm *bufio.Reader, section, field string) (int64, error) {
	body, err := bulk(admin, adm, "INFO "+section)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO %s: no %s", section, field)
}

// bulk sends an inline command whose reply is a bulk string and returns it.
func bulk(c net.Conn, rd *bufio.Reader, cmd string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	head, err := rd.ReadString('\n')
	if err != nil || len(head) < 2 || head[0] != '$' {
		return "", fmt.Errorf("%s: reply %q: %v", cmd, head, err)
	}
	size, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil || size < 0 || size > 1<<20 {
		return "", fmt.Errorf("%s: reply length %q", cmd, head)
	}
	body := make([]byte, size+2)
	if _, err := io.ReadFull(rd, body); err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	return string(body), nil
}

// command sends an inline command and reads its one-line reply.
func command(c net.Conn, rd *bufio.Reader, cmd string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	line, err := rd.ReadString('\n')
	if err != nil || strings.HasPrefix(line, "-") {
		return fmt.Errorf("%s: reply %q: %v", cmd, line, err)
	}
	return nil
}
