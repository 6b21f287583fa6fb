#!/usr/bin/env bash
# The eBPF source's cost (docs/benchmarks.md, "eBPF source"): the kernel's
# per-program statistics (kernel.bpf_stats_enabled, turned on for the run)
# while the watched port is idle and under valkey-benchmark -k 0 (a new
# connection per request), and getppid(2) timed with and without the
# programs; then the same load with the programs watching an unused port
# (every run an early return: the client end's share, and what other TCP
# traffic on the host pays). Needs root, valkey-server and valkey-benchmark.
# ~1 minute.
#
#   CONNS=100000 IDLE_S=10 ./bench/ebpf.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== eBPF cost ($(date -u +%FT%TZ), $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
STORMGUARD_BENCH=1 STORMGUARD_BENCH_CONNS="${CONNS:-100000}" STORMGUARD_BENCH_IDLE_S="${IDLE_S:-10}" \
	go test -count=1 -v -timeout 20m -run "TestBenchEBPF${ONLY:-}" ./internal/listentrace/ | grep -E 'RESULT|idle:|load:|unwatched:|empty:|^(---|ok|FAIL|PASS)'
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
