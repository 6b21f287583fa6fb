package defuse

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/valkeyreply"

	"github.com/valkey-io/valkey-go"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/netns"
)

// valkeyAdmin is the small set of admin commands defuse needs.
type valkeyAdmin struct {
	c valkey.Client
}

// dialValkey opens one admin connection to a in the namespace ns. The
// socket is created inside the namespace and stays bound to it.
func dialValkey(ctx context.Context, a addr.Addr, ns string) (*valkeyAdmin, error) {
	opt := valkey.ClientOption{
		InitAddress:       []string{a.HostPort()},
		Username:          a.User,
		Password:          a.Password,
		SelectDB:          a.DB,
		DisableCache:      true,
		ForceSingleClient: true,
		DisableRetry:      true,
		ConnWriteTimeout:  5 * time.Second,
		Dialer:            net.Dialer{Timeout: 3 * time.Second},
		DialCtxFn: func(ctx context.Context, hostport string, d *net.Dialer, tc *tls.Config) (net.Conn, error) {
			var c net.Conn
			err := netns.Do(ns, func() error {
				var err error
				if tc != nil {
					c, err = (&tls.Dialer{NetDialer: d, Config: tc}).DialContext(ctx, "tcp", hostport)
				} else {
					c, err = d.DialContext(ctx, "tcp", hostport)
				}
				return err
			})
			return c, err
		},
	}
	if a.TLS {
		opt.TLSConfig = &tls.Config{ServerName: a.Host, InsecureSkipVerify: a.TLSInsecure} //nolint:gosec // lab opt-in only
	}
	c, err := valkey.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect to Valkey %s: %w", a, err)
	}
	return &valkeyAdmin{c: c}, nil
}

func (v *valkeyAdmin) Close() { v.c.Close() }

// ConfigGet returns one config parameter; ok is false when the server does
// not know it (e.g. max-new-connections-per-cycle before Valkey 8.0).
func (v *valkeyAdmin) ConfigGet(ctx context.Context, name string) (string, bool, error) {
	m, err := v.c.Do(ctx, v.c.B().ConfigGet().Parameter(name).Build()).AsStrMap()
	if err != nil {
		return "", false, fmt.Errorf("CONFIG GET %s: %w", name, err)
	}
	val, ok := m[name]
	return val, ok, nil
}

// ConfigSet sets one config parameter.
func (v *valkeyAdmin) ConfigSet(ctx context.Context, name, value string) error {
	if err := v.c.Do(ctx, v.c.B().ConfigSet().ParameterValue().ParameterValue(name, value).Build()).Error(); err != nil {
		return fmt.Errorf("CONFIG SET %s %s: %w", name, value, err)
	}
	return nil
}

// Info returns INFO sections as fields.
func (v *valkeyAdmin) Info(ctx context.Context, sections ...string) (map[string]string, error) {
	s, err := v.c.Do(ctx, v.c.B().Info().Section(sections...).Build()).ToString()
	if err != nil {
		return nil, fmt.Errorf("INFO %s: %w", strings.Join(sections, " "), err)
	}
	return parseInfo(s), nil
}

// ClientList returns CLIENT LIST TYPE normal, parsed.
func (v *valkeyAdmin) ClientList(ctx context.Context) ([]map[string]string, error) {
	s, err := v.c.Do(ctx, v.c.B().ClientList().TypeNormal().Build()).ToString()
	if err != nil {
		return nil, fmt.Errorf("CLIENT LIST: %w", err)
	}
	return parseClientList(s), nil
}

// ClientID returns this connection's client id.
func (v *valkeyAdmin) ClientID(ctx context.Context) (string, error) {
	n, err := v.c.Do(ctx, v.c.B().ClientId().Build()).AsInt64()
	if err != nil {
		return "", fmt.Errorf("CLIENT ID: %w", err)
	}
	return strconv.FormatInt(n, 10), nil
}

// ClientKill kills one client by id.
func (v *valkeyAdmin) ClientKill(ctx context.Context, id string) error {
	if err := v.c.Do(ctx, v.c.B().Arbitrary("CLIENT", "KILL", "ID", id, "SKIPME", "yes").Build()).Error(); err != nil {
		return fmt.Errorf("CLIENT KILL ID %s: %w", id, err)
	}
	return nil
}

// parseInfo parses INFO output (valkeyreply.ParseInfo).
func parseInfo(s string) map[string]string { return valkeyreply.ParseInfo(s) }

// parseClientList parses CLIENT LIST output (valkeyreply.ParseClientList).
func parseClientList(s string) []map[string]string { return valkeyreply.ParseClientList(s) }

// atoi parses an INFO number; ok is false when missing or malformed.
func atoi(m map[string]string, k string) (int64, bool) {
	v, ok := m[k]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	return n, err == nil
}
