// Package tui is `stormguard top`: a live terminal view of every target's
// state and signals, fed either by an in-process agent (--valkey) or by a
// running agent's JSON API (--agent URL). It fits 80×24, follows resizes,
// and quits on q or Ctrl-C. With stdout not a terminal it prints plain
// frames instead (Print).
package tui
