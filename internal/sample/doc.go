// Package sample defines Sample, one instant of every storm signal for one
// Valkey listener, and the Sampler that produces a gap-free stream of them.
//
// A Sample is plain data. Counters stay cumulative (rates are derived
// downstream by the detector); a signal that could not be read is nil, so its
// JSON is null, and the reason is recorded in Errors under the source's name.
// Nil never means zero.
package sample
