//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/stormguard/stormguard/internal/lab"
)

// labDialWindow is how long labDials lets n dials whose SYNs a full
// accept queue drops run before reading the CPU: long enough for every
// goroutine to have made its connect() and parked, well before the SYN
// retransmit (1 s).
const labDialWindow = 300 * time.Millisecond

// labDials times the lab client's own dial (lab.NewDialer in this
// namespace: the socket factory, the poller registration and connect of
// a `storm --spawn` run, with its 2 s connect timeout) from n goroutines
// that exist already and are released together, as a fleet's clients
// redial: their connects find (1) nothing listening (refused, a
// restart's down server), (2) a listener whose accept queue is full (the
// SYN dropped: the goroutine parks until the retransmit; the CPU is read
// labDialWindow after the release) and (3) a listener with room that
// never accepts (the whole handshake). A fourth round wakes the n
// goroutines without dialling: what the release itself costs.
func labDials(port, n int) error {
	dial, done, err := lab.NewDialer("/proc/self/ns/net", 2*time.Second)
	if err != nil {
		return fmt.Errorf("lab dialer: %w", err)
	}
	defer done()
	full, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer full.Close()
	_, _, fill, err := connects(port+1, 4200) // more than any backlog (somaxconn 4096)
	defer closeAll(fill)
	if err != nil {
		return err
	}
	room, err := listen(port+2, false) // backlog 4096: room for n ≤ 4,000
	if err != nil {
		return err
	}
	defer syscall.Close(room)
	time.Sleep(200 * time.Millisecond) // the fill's handshakes are done
	rounds := []struct {
		what string
		port int // 0: no dial
	}{
		{"lab dials refused", port}, {"lab dials dropped (accept queue full)", port + 1},
		{"lab dials accepted (whole handshake)", port + 2}, {"goroutines released, no dial", 0},
	}
	for _, r := range rounds {
		cpu, wall, err := labDialRound(dial, r.port, n)
		if err != nil {
			return fmt.Errorf("%s: %w", r.what, err)
		}
		report("labdial", r.what, n, cpu, wall)
	}
	return nil
}

// labDialRound releases n parked goroutines that each dial 127.0.0.1:port
// once (port 0: none dials) and returns the CPU and wall time until every
// dial returned, or labDialWindow for dials that park (a dropped SYN).
func labDialRound(dial lab.DialFunc, port, n int) (cpu, wall time.Duration, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ready, finished sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	var conns sync.Map
	for i := range n {
		ready.Add(1)
		finished.Add(1)
		go func() {
			defer finished.Done()
			ready.Done()
			<-start
			if port == 0 {
				return
			}
			c, err := dial(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
			switch {
			case err == nil:
				conns.Store(i, c)
			case errors.Is(err, syscall.ECONNREFUSED), ctx.Err() != nil:
			default:
				errs <- err
			}
		}()
	}
	ready.Wait()
	time.Sleep(50 * time.Millisecond) // every goroutine parked on start
	c0, w0 := processCPU(), time.Now()
	close(start)
	waited := make(chan struct{})
	go func() { finished.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(labDialWindow):
	}
	cpu, wall = processCPU()-c0, time.Since(w0)
	cancel()
	<-waited
	conns.Range(func(_, v any) bool { _ = v.(net.Conn).Close(); return true })
	close(errs)
	for e := range errs {
		return 0, 0, e
	}
	return cpu, wall, nil
}
