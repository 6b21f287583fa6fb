// Package serve exposes the agent's view over HTTP: Prometheus metrics built
// from the latest Sample of each target (a const-metric collector, no I/O at
// scrape time), a JSON API (state, recent samples, events), a server-sent
// events stream, a health check and the embedded dashboard.
//
// The Hub is the only shared state: the agent publishes each target's
// samples and state changes into it, and every handler reads from it. A
// scrape never waits for a source, so /metrics keeps answering while Valkey
// is stuck.
package serve
