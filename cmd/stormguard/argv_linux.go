package main

import (
	"os"
	"strings"
	"unsafe"
)

// hideArgvPasswords keeps a password given in an address on the command
// line (valkey://user:secret@host) out of /proc/PID/cmdline, where any
// local user can read it, as valkey-cli warns about -a: os.Args gets
// copies, then the bytes of the original arguments, which are what the
// kernel shows, have the password overwritten with '*'. The password in
// VALKEY_PASSWORD or --password-file never was in the arguments.
//
// On Linux the runtime's argument strings point at the argv block itself
// (no copy), the block is writable, and nothing reads it after this.
func hideArgvPasswords() {
	for i, a := range os.Args {
		lo, hi := argvPassword(a)
		if lo == hi {
			continue
		}
		os.Args[i] = strings.Clone(a)
		b := unsafe.Slice(unsafe.StringData(a), len(a))
		for j := lo; j < hi; j++ {
			b[j] = '*'
		}
	}
}
