// Package addr parses Valkey addresses as the command line accepts them:
// HOST:PORT, valkey://[user:pass@]host:port[/db] and valkeys://… (TLS), plus
// the redis:// and rediss:// spellings. Passwords may also come from the
// VALKEY_PASSWORD environment variable or a file; String never prints them.
package addr
