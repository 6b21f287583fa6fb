#!/usr/bin/env bash
# The watch agent's benchmarks; results go to docs/benchmarks.md ("watch
# agent"). Needs root and valkey-server: every case builds a network
# namespace with a real Valkey (internal/sandbox) and watches it with the
# agent (in-process for latency, early warning and false alarms; the built
# binary for cost and the soak). Gated by STORMGUARD_BENCH=1 so `make test`
# never runs them. About 40 minutes with the defaults:
#
#   TestBenchWatchDetectionLatency  first kernel listen overflow (independent
#                                   2 ms poller of the namespace's netstat) →
#                                   agent's storm state, STORMS storms (12);
#                                   also from before the burst (upper bound);
#                                   eBPF on unless STORMGUARD_EBPF=0
#   TestBenchWatchEarlyWarning      ramping connection rate against a Valkey
#                                   that stalls: surge lead over the first
#                                   overflow, RAMPS runs (5)
#   TestBenchWatchNoFalseAlarm      60 s keepalive load, 60 s steady churn
#   TestBenchWatchCost              CPU and RSS of `stormguard watch` as a
#                                   user runs it (discovery, attribution on)
#                                   with 0 and ~20,000 connections on the
#                                   port, at COST_INTERVALS (10ms,100ms,500ms,2s);
#                                   BEFORE_BIN=/path/to/stormguard measures
#                                   that binary side by side with this tree's
#   TestBenchWatchStreamClients     RSS while 3,000 local clients hold
#                                   /api/v1/stream open without reading
#   TestBenchWatchSoak              SOAK_MINUTES (10) at 100 ms, RSS sampled
#
# ONLY=regexp runs a subset, e.g. ONLY=Latency ./bench/watch.sh; INTERVAL=100ms
# runs the latency case at another sampling interval.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== watch benchmarks ($(date -u +%FT%TZ), $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
STORMGUARD_BENCH=1 \
STORMGUARD_BENCH_STORMS="${STORMS:-12}" STORMGUARD_BENCH_RAMPS="${RAMPS:-5}" \
STORMGUARD_BENCH_INTERVAL="${INTERVAL:-500ms}" STORMGUARD_BENCH_SOAK_MINUTES="${SOAK_MINUTES:-10}" \
STORMGUARD_BENCH_BEFORE_BIN="${BEFORE_BIN:-}" STORMGUARD_BENCH_COST_INTERVALS="${COST_INTERVALS:-10ms,100ms,500ms,2s}" \
STORMGUARD_BENCH_COST_CONNS="${COST_CONNS:-0,19960}" STORMGUARD_BENCH_COST_SECONDS="${COST_SECONDS:-60}" \
	go test -count=1 -v -timeout 60m -run "TestBenchWatch.*${ONLY:-}" ./internal/agent/ | grep -E 'RESULT|^(---|ok|FAIL|PASS)|rss|ramp [0-9]+:|storm +[0-9]+:'
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
