package addr

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// DefaultPort is Valkey's default TCP port.
const DefaultPort = 6379

// Addr is a parsed Valkey address.
type Addr struct {
	Host     string
	Port     int
	User     string
	Password string
	DB       int
	TLS      bool
	// TLSInsecure skips certificate verification (lab use only).
	TLSInsecure bool
	// TLSFiles are the TLS options that are not part of the address
	// (valkey-cli's --cacert, --cert, --key, --sni); flags set them.
	TLSFiles TLSFiles
}

// TLSFiles are a TLS connection's CA bundle, client certificate and key
// (PEM file paths) and the server name to send and verify (SNI). Empty
// fields mean the defaults: system roots, no client certificate, the
// address's host.
type TLSFiles struct {
	CACert, Cert, Key, SNI string
}

// ErrBadAddress is wrapped by every parse error.
var ErrBadAddress = errors.New("bad Valkey address")

// Parse parses s. A bare host:port is plain TCP; schemes valkey:// and
// redis:// are plain, valkeys:// and rediss:// are TLS.
func Parse(s string) (Addr, error) {
	var a Addr
	if s == "" {
		return a, fmt.Errorf("%w: empty (want HOST:PORT or valkey://[user:pass@]host:port[/db])", ErrBadAddress)
	}
	if !strings.Contains(s, "://") {
		host, port, err := splitHostPort(s)
		if err != nil {
			return a, fmt.Errorf("%w %q: %v (want HOST:PORT or valkey://[user:pass@]host:port[/db])", ErrBadAddress, redactRaw(s), err)
		}
		a.Host, a.Port = host, port
		return a, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return a, fmt.Errorf("%w %q: cannot parse URL", ErrBadAddress, redactRaw(s))
	}
	switch u.Scheme {
	case "valkey", "redis":
	case "valkeys", "rediss":
		a.TLS = true
	default:
		return a, fmt.Errorf("%w %q: unknown scheme %q (want valkey:// or valkeys://)", ErrBadAddress, redactRaw(s), u.Scheme)
	}
	hp := u.Host
	if u.Port() == "" && hp != "" {
		hp = net.JoinHostPort(strings.Trim(hp, "[]"), strconv.Itoa(DefaultPort))
	}
	host, port, err := splitHostPort(hp)
	if err != nil {
		return a, fmt.Errorf("%w %q: %v", ErrBadAddress, redactRaw(s), err)
	}
	a.Host, a.Port = host, port
	if u.User != nil {
		a.User = u.User.Username()
		a.Password, _ = u.User.Password()
		if _, has := u.User.Password(); !has {
			// valkey://secret@host: a lone userinfo is the password,
			// as redis-cli and most clients read it.
			a.Password, a.User = a.User, ""
		}
		if a.User == "default" {
			a.User = ""
		}
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		db, err := strconv.Atoi(p)
		if err != nil || db < 0 {
			return a, fmt.Errorf("%w %q: database %q is not a non-negative number", ErrBadAddress, redactRaw(s), p)
		}
		a.DB = db
	}
	if q := u.Query().Get("insecure"); q == "1" || q == "true" {
		a.TLSInsecure = true
	}
	return a, nil
}

func splitHostPort(s string) (string, int, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, errors.New("missing or malformed port")
	}
	if host == "" {
		return "", 0, errors.New("missing host")
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q out of range 1-65535", ps)
	}
	return host, port, nil
}

// redactRaw hides a password in an address that failed to parse.
func redactRaw(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	return s[:i+3] + "***@" + rest[at+1:]
}

// HostPort returns host:port.
func (a Addr) HostPort() string { return net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) }

// String returns the address without its password.
func (a Addr) String() string {
	scheme := "valkey"
	if a.TLS {
		scheme = "valkeys"
	}
	user := ""
	switch {
	case a.User != "" && a.Password != "":
		user = a.User + ":***@"
	case a.User != "":
		user = a.User + "@"
	case a.Password != "":
		user = "***@"
	}
	db := ""
	if a.DB != 0 {
		db = "/" + strconv.Itoa(a.DB)
	}
	return scheme + "://" + user + a.HostPort() + db
}

// ApplyPassword fills a missing password from passwordFile (if set) or the
// VALKEY_PASSWORD environment variable, in that order. A password in the
// address wins.
func (a *Addr) ApplyPassword(passwordFile string, getenv func(string) string) error {
	if a.Password != "" {
		return nil
	}
	if passwordFile != "" {
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			return fmt.Errorf("read password file: %w", err)
		}
		a.Password = strings.TrimRight(string(b), "\r\n")
		return nil
	}
	if getenv != nil {
		a.Password = getenv("VALKEY_PASSWORD")
	}
	return nil
}
