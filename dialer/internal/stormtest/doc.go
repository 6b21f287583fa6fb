// Package stormtest holds what the dialer adapters' integration tests
// share: a counting, gateable dial function that dials inside a sandbox's
// network namespace, and saturating a real valkey-server to maxclients
// with idle connections.
package stormtest
