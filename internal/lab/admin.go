package lab

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// adminName is the admin connection's CLIENT SETNAME, so CLIENT LIST tells
// it from the run's clients.
const adminName = "stormguard-lab-admin"

// adminTimeout bounds the admin connection's dial and handshake, and each
// command.
const adminTimeout = 5 * time.Second

// admin is the lab's own connection to the server: CLIENT KILL and INFO
// go over it. It is not a client of the run and is never counted. It is
// built by valkeyconn (dial through Endpoint.Dial, TLS, HELLO 3 AUTH,
// SETNAME) and opened on first use.
type admin struct {
	ep valkeyconn.Endpoint
	// stall is the longest DEBUG SLEEP it runs (Config.Stall).
	stall time.Duration
	c     valkey.Client
}

func (a *admin) close() {
	if a.c != nil {
		a.c.Close()
		a.c = nil
	}
}

func (a *admin) client() (valkey.Client, error) {
	if a.c != nil {
		return a.c, nil
	}
	c, err := valkeyconn.ConnectEndpoint(a.ep, valkeyconn.Options{
		Name: adminName,
		// No CLIENT SETINFO: the admin connection is no library's.
		SetInfo:     []string{},
		DialTimeout: adminTimeout,
		// A stalled server (slow scenario) must not make valkey-go's
		// idle PING close the connection while a DEBUG SLEEP runs.
		WriteTimeout: max(10*time.Second, a.stall+adminTimeout),
	})
	if err != nil {
		return nil, err
	}
	a.c = c
	return c, nil
}

// do runs one command (f) within timeout, once more on a new connection if
// the connection was lost (the server restarted under it).
func (a *admin) do(ctx context.Context, timeout time.Duration, f func(context.Context, valkey.Client) error) error {
	var err error
	for i := 0; i < 2; i++ {
		var c valkey.Client
		if c, err = a.client(); err != nil {
			if !valkeyconn.ConnectionLost(err) {
				return err // the server answered the handshake with an error
			}
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err = f(cctx, c)
		cancel()
		if err == nil || !valkeyconn.ConnectionLost(err) {
			return err
		}
		a.close()
	}
	return err
}

// doRetry retries do until it succeeds or timeout passes: after a
// restart, or in a storm, the admin connection may need a few tries (a
// server at maxclients refuses it with an error reply).
func (a *admin) doRetry(ctx context.Context, timeout time.Duration, f func(context.Context, valkey.Client) error) error {
	deadline := time.Now().Add(timeout)
	sched, _ := backoff.NewSchedule(backoff.Fixed{Every: 100 * time.Millisecond}, nil) // a valid policy
	for {
		err := a.do(ctx, adminTimeout, f)
		retry := err != nil && (valkeyconn.ConnectionLost(err) || strings.Contains(err.Error(), "max number of clients"))
		if !retry || time.Now().After(deadline) || !sleepCtx(ctx, sched.Failure()) {
			return err
		}
	}
}

// ping checks that the server answers.
func (a *admin) ping(ctx context.Context) error {
	return a.do(ctx, adminTimeout, func(ctx context.Context, c valkey.Client) error {
		return c.Do(ctx, c.B().Ping().Build()).Error()
	})
}

// killNormal disconnects every normal client but this one.
func (a *admin) killNormal(ctx context.Context) (int64, error) {
	var n int64
	err := a.do(ctx, adminTimeout, func(ctx context.Context, c valkey.Client) error {
		var err error
		n, err = c.Do(ctx, c.B().ClientKill().TypeNormal().SkipmeYes().Build()).AsInt64()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("CLIENT KILL: %w", err)
	}
	return n, nil
}

// debugSleep runs DEBUG SLEEP for d (an outside server's stall).
func (a *admin) debugSleep(ctx context.Context, d time.Duration) error {
	secs := strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
	return a.do(ctx, d+adminTimeout, func(ctx context.Context, c valkey.Client) error {
		return c.Do(ctx, c.B().Arbitrary("DEBUG", "SLEEP").Args(secs).Build()).Error()
	})
}

// clientList returns CLIENT LIST.
func (a *admin) clientList(ctx context.Context) (string, error) {
	var s string
	err := a.do(ctx, adminTimeout, func(ctx context.Context, c valkey.Client) error {
		var err error
		s, err = c.Do(ctx, c.B().ClientList().Build()).ToString()
		return err
	})
	return s, err
}

// info reads INFO section, retrying for up to timeout.
func (a *admin) info(ctx context.Context, timeout time.Duration, section string) (map[string]string, error) {
	var m map[string]string
	err := a.doRetry(ctx, timeout, func(ctx context.Context, c valkey.Client) error {
		var err error
		m, err = valkeyconn.Info(ctx, c, section)
		return err
	})
	return m, err
}

// stats reads the numeric fields of INFO stats.
func (a *admin) stats(ctx context.Context, timeout time.Duration) (map[string]uint64, error) {
	info, err := a.info(ctx, timeout, "stats")
	if err != nil {
		return nil, err
	}
	return infoCounters(info), nil
}

// cpuSeconds reads INFO cpu: the server's user+system CPU seconds so far.
func (a *admin) cpuSeconds(ctx context.Context, timeout time.Duration) (float64, error) {
	info, err := a.info(ctx, timeout, "cpu")
	if err != nil {
		return 0, err
	}
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
