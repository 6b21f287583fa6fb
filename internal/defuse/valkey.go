package defuse

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/clientlist"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// valkeyAdmin is the small set of admin commands defuse needs.
type valkeyAdmin struct {
	c valkey.Client
}

// dialValkey opens one admin connection to a in the namespace ns through
// valkeyconn: the socket is created inside the namespace and stays bound
// to it, the TLS handshake runs outside, with TLS 1.2 as the minimum.
func dialValkey(_ context.Context, a addr.Addr, ns string) (*valkeyAdmin, error) {
	c, err := valkeyconn.Connect(a, ns, valkeyconn.Options{DialTimeout: 3 * time.Second, WriteTimeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("connect to Valkey %s: %w", a, err)
	}
	return &valkeyAdmin{c: c}, nil
}

func (v *valkeyAdmin) Close() { v.c.Close() }

// ConfigGet returns one config parameter; ok is false when the server does
// not know it (e.g. max-new-connections-per-cycle before Valkey 8.0).
func (v *valkeyAdmin) ConfigGet(ctx context.Context, name string) (string, bool, error) {
	m, err := valkeyconn.ConfigGet(ctx, v.c, name)
	if err != nil {
		return "", false, err
	}
	val, ok := m[name]
	return val, ok, nil
}

// ConfigSet sets one config parameter.
func (v *valkeyAdmin) ConfigSet(ctx context.Context, name, value string) error {
	return valkeyconn.ConfigSet(ctx, v.c, name, value)
}

// Info returns INFO sections as fields.
func (v *valkeyAdmin) Info(ctx context.Context, sections ...string) (map[string]string, error) {
	return valkeyconn.Info(ctx, v.c, sections...)
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

// parseClientList parses CLIENT LIST output (clientlist.Fields).
func parseClientList(s string) []map[string]string {
	rows, _ := clientlist.Fields(s)
	return rows
}

// atoi parses an INFO number; ok is false when missing or malformed.
func atoi(m map[string]string, k string) (int64, bool) {
	v, ok := m[k]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	return n, err == nil
}
