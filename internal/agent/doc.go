// Package agent runs `stormguard watch`: for every target (given, or
// discovered and followed as servers come and go) it opens the signal
// sources, samples on a fixed interval, feeds the detector, and hands each
// sample and event to the hub (HTTP), the journal and the notifier.
//
// Data flows one way: sources → sampler → detector → state and events →
// journal, notifier, HTTP. Nothing downstream can slow a sampler: the hub
// and journal take a lock for microseconds, the notifier has its own queue.
package agent
