// Package valkeyconn is how stormguard talks to Valkey from inside a
// network namespace: one place for the dial (the TCP socket is created in
// the target's namespace, the TLS handshake and everything after it run
// outside, on any thread), TLS (TLS 1.2 or later; a private CA bundle, a
// client certificate and SNI as valkey-cli's --cacert, --cert, --key and
// --sni), authentication (user and password from the address, the
// VALKEY_PASSWORD variable or a password file, see package addr), the
// connection handshake (HELLO, CLIENT SETNAME, CLIENT SETINFO, done by
// valkey-go), and small INFO and CONFIG helpers with the one INFO parser
// of the project.
//
// The agent's valkey source, check, defuse and the storm lab's admin
// connection build their connections here (the lab through Endpoint, with
// its own counted dial and per-run TLS); each keeps its own policy (how often to redial, which
// commands are safe when). The public dialer/valkeygo adapter does not
// import it: it is for applications, which bring their own TLS settings.
package valkeyconn
