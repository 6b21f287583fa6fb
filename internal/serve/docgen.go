package serve

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricsMarkdown renders the metrics reference (docs/metrics.md) from the
// same table /metrics is built from, so the two cannot drift.
func MetricsMarkdown() string {
	var b strings.Builder
	b.WriteString("# Metrics reference\n\n")
	b.WriteString("Generated from `internal/serve/metrics.go` by `go test ./internal/serve -run TestMetricsDoc -update`; do not edit by hand.\n\n")
	b.WriteString("Every series carries the label `target` (the Valkey listener, `host:port`; a discovered one reached on loopback in another network namespace, such as a pod's, is `host:port@NAME`: see [watch.md](watch.md)). ")
	b.WriteString("TCP and conntrack counters are per **network namespace**, not per port: two listeners in one namespace report the same values. ")
	b.WriteString("A signal that is unavailable is absent (never 0); `stormguard_source_up` says which source failed.\n\n")
	b.WriteString("| metric | type | source | meaning |\n|---|---|---|---|\n")
	row := func(name, typ, src, help string) {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", name, typ, src, strings.ReplaceAll(help, "|", "\\|"))
	}
	row("stormguard_storm_state", "gauge", "detector", "Detector state per target: 0 calm, 1 surge (early warning), 2 storm (connections dropped or refused now), 3 recovering.")
	for _, m := range sampleMetrics {
		typ := "gauge"
		if m.Type == prometheus.CounterValue {
			typ = "counter"
		}
		row(m.Name, typ, m.Source, m.Help)
	}
	row("stormguard_accept_wait_seconds", "histogram", "ebpf", acceptWaitHelp+" Buckets: every fourth power of two from 64 µs to 16.8 s.")
	row("stormguard_source_up", "gauge", "agent", "1 if the signal source answered in the last sample, 0 if it was unavailable or timed out. Labels: target, source.")
	row("stormguard_source_duration_seconds", "gauge", "agent", "How long the signal source took in the last sample. Labels: target, source.")
	row("stormguard_last_sample_timestamp_seconds", "gauge", "agent", "Unix time of the target's latest sample.")
	row("stormguard_samples_total", "counter", "agent", "Samples taken of the target since the agent started.")
	row("stormguard_build_info", "gauge", "agent", "Always 1; labelled with the agent's version.")
	row("stormguard_target_info", "gauge", "valkey", targetInfoHelp+" Labels: target, role, cluster_node_id.")
	row("stormguard_top_source_new_connections", "gauge", "agent", topCountHelp)
	row("stormguard_top_source_share", "gauge", "agent", topShareHelp)
	row("stormguard_go_*, stormguard_process_*", "various", "agent", "The Go runtime's and the agent process's standard metrics (Prometheus client_golang's Go and process collectors: goroutines, memory, GC, CPU seconds, open fds, …), prefixed with stormguard_ like every other name.")
	return b.String()
}
