// Package stormtest holds what the dialer adapters' integration tests
// share: a counting, gateable dial function that dials inside a sandbox's
// network namespace, saturating a real valkey-server to maxclients with
// idle connections, and the maxclients storm itself (MaxClientsStorm,
// GuardedDialer, CheckCut), so go-redis and valkey-go are measured the
// same way.
package stormtest
