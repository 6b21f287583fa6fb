// Package corpus is the detector's scenario corpus: recordings of real
// sample streams (a real valkey-server in a network namespace, real
// traffic, sampled by the real agent at its default cadence), each with a
// label saying what the detector must conclude, and the scoring that
// replays them (through internal/replay, the engine of `stormguard
// replay`) and compares. The recordings live in testdata/ and are made by
// the program in record/ (`make corpus`); docs/corpus.md describes each
// shape.
package corpus
