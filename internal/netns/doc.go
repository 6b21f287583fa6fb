// Package netns runs work inside a target's network namespace.
//
// Kernel signals (proc files, netlink sockets) and the Valkey connection must
// come from the namespace the target lives in. A socket or an open /proc/net
// file stays bound to the namespace it was created in, so the pattern is:
// create the socket or open the file inside Do, then use it from any
// goroutine. Do locks the calling goroutine's OS thread, switches it with
// setns(2), runs the function, and switches back; if switching back fails the
// thread is left locked so the Go runtime discards it instead of reusing a
// thread in the wrong namespace.
//
// Entering a namespace needs CAP_SYS_ADMIN. An empty path means "the
// namespace stormguard runs in" and Do then just calls the function.
package netns
