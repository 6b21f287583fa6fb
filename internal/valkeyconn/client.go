package valkeyconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/stormguard/stormguard/internal/addr"
)

// Options are the handshake and timeouts of one connection.
type Options struct {
	// Name is sent as CLIENT SETNAME, so operators can tell stormguard's
	// connection apart in CLIENT LIST ("" sends none).
	Name string
	// SetInfo is CLIENT SETINFO lib-name and lib-ver (nil = valkey-go's).
	SetInfo []string
	// DialTimeout bounds the TCP connect plus TLS handshake, and
	// separately the HELLO/AUTH/SETNAME handshake that follows.
	DialTimeout time.Duration
	// KeepAlive is the TCP keepalive period and the idle gap after which
	// valkey-go sends a PING (0 = Go's and valkey-go's defaults).
	KeepAlive time.Duration
	// WriteTimeout is valkey-go's ConnWriteTimeout: a connection that
	// stays silent this long after a write is closed.
	WriteTimeout time.Duration
	// OnConn, when set, sees each raw TCP connection (DialCtxFn).
	OnConn func(net.Conn)
}

// ClientOption returns the valkey-go options for ONE connection to a from
// the namespace ns: credentials and database from the address, TLS from
// TLSConfig, the dial DialTCP, and the rest as EndpointOption.
// Callers adjust the rest (the agent's source keeps valkey-go in
// pipelining mode and installs its own gated dial).
func ClientOption(a addr.Addr, ns string, o Options) (valkey.ClientOption, error) {
	tc, err := TLSConfig(a)
	if err != nil {
		return valkey.ClientOption{}, err
	}
	opt := EndpointOption(Endpoint{
		Addr: a.HostPort(), User: a.User, Password: a.Password, TLS: tc,
		Dial: func(ctx context.Context, d *net.Dialer) (net.Conn, error) { return DialTCP(ctx, d, a, ns) },
	}, o)
	opt.SelectDB = a.DB
	return opt, nil
}

// Endpoint is a server reached by a dial the caller brings. The storm lab
// uses it: it dials from its own sockets in the run's namespace, counts
// every attempt (the kernel's connect counters include them) and makes
// its TLS settings per run.
type Endpoint struct {
	// Addr is host:port, as valkey-go names the node.
	Addr           string
	User, Password string
	// TLS, when set, is handshaken over what Dial returns (HandshakeTLS).
	TLS *tls.Config
	// Dial makes the TCP connection; d carries the timeout and keepalive
	// of Options.
	Dial func(ctx context.Context, d *net.Dialer) (net.Conn, error)
}

// EndpointOption returns the valkey-go options for ONE connection to e:
// the handshake from o, no cluster discovery, one pipelined connection,
// no client-side cache and no retries (a retry would redial).
func EndpointOption(e Endpoint, o Options) valkey.ClientOption {
	return valkey.ClientOption{
		InitAddress:   []string{e.Addr},
		Username:      e.User,
		Password:      e.Password,
		ClientName:    o.Name,
		ClientSetInfo: o.SetInfo,
		TLSConfig:     e.TLS,
		Dialer:        net.Dialer{Timeout: o.DialTimeout, KeepAlive: o.KeepAlive},
		DialCtxFn:     dialCtxFn(e.Dial, o.OnConn),
		// No CLUSTER SLOTS/SHARDS discovery: one node, one connection.
		ForceSingleClient: true,
		// 2^0 = 1 pipelined connection (0 would mean 2^min(2, log2 GOMAXPROCS)).
		PipelineMultiplex: -1,
		// Blocking commands, DoStream and Dedicated are never used; bound
		// the pool anyway.
		BlockingPoolSize: 1,
		// No CLIENT TRACKING and no per-connection cache memory.
		DisableCache:     true,
		DisableRetry:     true,
		ConnWriteTimeout: o.WriteTimeout,
	}
}

// Connect opens one connection (valkey-go dials and handshakes at once,
// each bounded by o.DialTimeout). Callers say what they were connecting
// for; the error never holds the password.
func Connect(a addr.Addr, ns string, o Options) (valkey.Client, error) {
	opt, err := ClientOption(a, ns, o)
	if err != nil {
		return nil, err
	}
	c, err := valkey.NewClient(opt)
	if err != nil {
		return nil, describeAuth(err)
	}
	return c, nil
}

// authError is a connect refused for want of a password, with the hint
// of where one goes; it unwraps to Valkey's reply.
type authError struct {
	msg string
	err error
}

func (e *authError) Error() string { return e.msg }
func (e *authError) Unwrap() error { return e.err }

// PasswordHint says where a password for Valkey can come from.
const PasswordHint = "give valkey://user:pass@host:port, VALKEY_PASSWORD or --password-file"

// describeAuth phrases Valkey's NOAUTH reply (no password given for a
// server that requires one) for an operator: what to do, and the first
// clause of Valkey's two-sentence explanation of HELLO's AUTH option.
func describeAuth(err error) error {
	var ve *valkey.ValkeyError
	if !errors.As(err, &ve) || !strings.HasPrefix(ve.Error(), "NOAUTH") {
		return err
	}
	reply := ve.Error()
	if i := strings.Index(reply, ", "); i > 0 {
		reply = reply[:i]
	}
	return &authError{msg: "Valkey requires a password (" + PasswordHint + "): " + reply, err: err}
}

// ConnectEndpoint opens one connection to e, as Connect.
func ConnectEndpoint(e Endpoint, o Options) (valkey.Client, error) {
	return valkey.NewClient(EndpointOption(e, o))
}

// InfoText returns the raw INFO reply for sections (none = the default
// sections).
func InfoText(ctx context.Context, c valkey.Client, sections ...string) (string, error) {
	cmd := c.B().Info().Build()
	if len(sections) > 0 {
		cmd = c.B().Info().Section(sections...).Build()
	}
	s, err := c.Do(ctx, cmd).ToString()
	if err != nil {
		return "", fmt.Errorf("INFO %s: %w", strings.Join(sections, " "), err)
	}
	return s, nil
}

// Info returns the INFO sections as fields (ParseInfo).
func Info(ctx context.Context, c valkey.Client, sections ...string) (map[string]string, error) {
	s, err := InfoText(ctx, c, sections...)
	if err != nil {
		return nil, err
	}
	return ParseInfo(s), nil
}

// ConfigGet returns the config parameters the server knows of params
// (patterns allowed); unknown ones are absent from the map.
func ConfigGet(ctx context.Context, c valkey.Client, params ...string) (map[string]string, error) {
	m, err := c.Do(ctx, c.B().ConfigGet().Parameter(params...).Build()).AsStrMap()
	if err != nil {
		return nil, fmt.Errorf("CONFIG GET %s: %w", strings.Join(params, " "), err)
	}
	return m, nil
}

// ConfigSet sets one config parameter.
func ConfigSet(ctx context.Context, c valkey.Client, name, value string) error {
	if err := c.Do(ctx, c.B().ConfigSet().ParameterValue().ParameterValue(name, value).Build()).Error(); err != nil {
		return fmt.Errorf("CONFIG SET %s %s: %w", name, value, err)
	}
	return nil
}

// ConnectionLost tells a dead connection (socket error, EOF, refused
// redial) from an error reply Valkey sent on a live one.
func ConnectionLost(err error) bool {
	var ve *valkey.ValkeyError
	return !errors.As(err, &ve)
}

// IsPermission reports an ACL refusal (NOPERM).
func IsPermission(err error) bool {
	var ve *valkey.ValkeyError
	return errors.As(err, &ve) && strings.HasPrefix(ve.Error(), "NOPERM")
}
