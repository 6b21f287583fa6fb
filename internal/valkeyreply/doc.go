// Package valkeyreply parses Valkey's INFO reply (and CLIENT LIST
// addresses). One INFO parser for the whole project — the signal source,
// check and defuse use it — fuzzed once. CLIENT LIST is tokenized by
// package clientlist.
package valkeyreply
