// Package discover finds local Valkey (and Redis) servers with no
// configuration: every valkey-server or redis-server process, the TCP ports
// it listens on (matched through its socket inodes, so another process's
// listener is never taken for Valkey's) and the network namespace it lives
// in, containers included. Scan is cheap enough to repeat every few
// seconds, which is how the agent follows servers as they come and go.
package discover
