package lab

import (
	"strconv"

	"bufio"
	"context"
	"fmt"
	"github.com/stormguard/stormguard/internal/valkeyconn"
	"net"
	"strings"
	"time"
)

// admin is the lab's own connection to the server: CLIENT KILL and INFO
// go over it. It is not a client of the run and is never counted.
type admin struct {
	dial       DialFunc
	addr       string
	user, pass string

	c net.Conn
	r *bufio.Reader
}

func (a *admin) close() {
	if a.c != nil {
		a.c.Close()
		a.c, a.r = nil, nil
	}
}

func (a *admin) connect(ctx context.Context) error {
	if a.c != nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := a.dial(dctx, "tcp", a.addr)
	if err != nil {
		return err
	}
	a.c, a.r = c, bufio.NewReader(c)
	if a.pass != "" {
		args := []string{"AUTH", a.pass}
		if a.user != "" {
			args = []string{"AUTH", a.user, a.pass}
		}
		if _, err := a.roundTrip(args...); err != nil {
			a.close()
			return fmt.Errorf("authenticate: %w", err)
		}
	}
	return nil
}

func (a *admin) roundTrip(args ...string) (reply, error) {
	_ = a.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.c.Write(appendCommand(nil, args...)); err != nil {
		return reply{}, err
	}
	rp, err := readReply(a.r)
	if err != nil {
		return reply{}, err
	}
	if rp.kind == '-' {
		return rp, fmt.Errorf("%s: %s", args[0], rp.line)
	}
	return rp, nil
}

// do runs one command, reconnecting once if the connection was lost (the
// server restarted under it).
func (a *admin) do(ctx context.Context, args ...string) (reply, error) {
	var last error
	for i := 0; i < 2; i++ {
		if err := a.connect(ctx); err != nil {
			last = err
			continue
		}
		rp, err := a.roundTrip(args...)
		if err == nil || rp.kind == '-' {
			return rp, err
		}
		last = err
		a.close()
	}
	return reply{}, last
}

// doRetry retries do until it succeeds or timeout passes: after a
// restart, or in a storm, the admin connection may need a few tries.
func (a *admin) doRetry(ctx context.Context, timeout time.Duration, args ...string) (reply, error) {
	deadline := time.Now().Add(timeout)
	for {
		rp, err := a.do(ctx, args...)
		if err == nil || rp.kind == '-' && !strings.Contains(rp.line, "max number of clients") || time.Now().After(deadline) || ctx.Err() != nil {
			return rp, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killNormal disconnects every normal client but this one.
func (a *admin) killNormal(ctx context.Context) (int64, error) {
	rp, err := a.do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
	if err != nil {
		return 0, fmt.Errorf("CLIENT KILL: %w", err)
	}
	return rp.n, nil
}

// stats reads INFO stats.
func (a *admin) stats(ctx context.Context, timeout time.Duration) (map[string]uint64, error) {
	rp, err := a.doRetry(ctx, timeout, "INFO", "stats")
	if err != nil {
		return nil, fmt.Errorf("INFO stats: %w", err)
	}
	return infoCounters(rp.bulk), nil
}

// cpuSeconds reads INFO cpu: the server's user+system CPU seconds so far.
func (a *admin) cpuSeconds(ctx context.Context, timeout time.Duration) (float64, error) {
	rp, err := a.doRetry(ctx, timeout, "INFO", "cpu")
	if err != nil {
		return 0, fmt.Errorf("INFO cpu: %w", err)
	}
	info := valkeyconn.ParseInfo(string(rp.bulk))
	var sum float64
	for _, k := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, err := strconv.ParseFloat(info[k], 64)
		if err != nil {
			return 0, fmt.Errorf("INFO cpu: %s %q", k, info[k])
		}
		sum += v
	}
	return sum, nil
}
