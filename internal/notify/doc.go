// Package notify delivers the agent's alerts: a JSON webhook and
// Alertmanager's v2 API (an alert per target while it is in surge or storm,
// resolved when it turns calm). Each receiver is delivered to by its own
// goroutine from its own bounded queue (a hung webhook does not delay
// Alertmanager), retries with capped exponential backoff and jitter, and is
// rate-limited; a slow or dead receiver never blocks sampling — when the
// queue is full the oldest notification is dropped and counted.
package notify
