// Package valkeyreply parses Valkey's text replies that stormguard reads:
// INFO and CLIENT LIST. One parser each for the whole project (the signal
// source, check, defuse and the lab all use these), fuzzed once.
package valkeyreply
