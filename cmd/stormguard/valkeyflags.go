package main

import (
	"errors"
	"os"

	"github.com/spf13/pflag"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/valkeyconn"
)

// valkeyConnFlags are the connection flags of every command that takes a
// Valkey address: the password file and valkey-cli's TLS options. One
// definition, so every command names and checks them alike.
type valkeyConnFlags struct {
	passwordFile string
	tls          addr.TLSFiles
}

func (c *valkeyConnFlags) register(f *pflag.FlagSet) {
	f.StringVar(&c.passwordFile, "password-file", "", "read the Valkey password from this file (else $VALKEY_PASSWORD)")
	f.StringVar(&c.tls.CACert, "cacert", "", "TLS: CA bundle (PEM) to verify the server with, instead of the system roots")
	f.StringVar(&c.tls.Cert, "cert", "", "TLS: client certificate (PEM) for servers with tls-auth-clients yes; needs --key")
	f.StringVar(&c.tls.Key, "key", "", "TLS: private key (PEM) of --cert")
	f.StringVar(&c.tls.SNI, "sni", "", "TLS: server name to send and verify (default: the address's host)")
}

// tlsSet says whether any TLS option was given.
func (c valkeyConnFlags) tlsSet() bool { return c.tls != (addr.TLSFiles{}) }

// needValkey is the error for connection flags given without an address
// to use them with, or nil when none was given.
func (c valkeyConnFlags) needValkey() error {
	switch {
	case c.passwordFile != "":
		return errors.New("--password-file needs --valkey")
	case c.tlsSet():
		return errors.New("--cacert, --cert, --key and --sni need --valkey")
	}
	return nil
}

// address parses s and applies the flags: the password (address, then
// --password-file, then $VALKEY_PASSWORD) and the TLS options, whose files
// are read now so a wrong path is a usage error before any connection.
func (c valkeyConnFlags) address(s string) (addr.Addr, error) {
	a, err := addr.Parse(s)
	if err != nil {
		return a, err
	}
	if err := a.ApplyPassword(c.passwordFile, os.Getenv); err != nil {
		return a, err
	}
	a.TLSFiles = c.tls
	if _, err := valkeyconn.TLSConfig(a); err != nil {
		return a, err
	}
	return a, nil
}
