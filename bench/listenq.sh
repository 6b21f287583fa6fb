#!/usr/bin/env bash
# Accept-queue (listenq) source benchmarks; results go to docs/benchmarks.md.
#
# Needs root and valkey-server: each benchmark builds a network namespace with
# a real Valkey (internal/sandbox). The 20,000-connection cases hold their
# client sockets in helper processes (the test binary re-run as
# TestListenqConnHolder), since the fd limit here is a hard 20,000.
#
#   BenchmarkListenqCollectVsTalk  one full Collect (LISTEN + SYN_RECV +
#                                  ESTABLISHED, IPv4 and IPv6) vs one run of
#                                  `ss -Hln sport = :6379` and
#                                  `ss -anH state syn-recv | wc -l`, in CPU time
#   BenchmarkListenqPoller100Hz    CPU share of the 100 Hz poller over 10 s
#   BenchmarkTicker100Hz           the floor: a Go ticker at 100 Hz doing nothing
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== listenq benchmarks ($(date -u +%FT%TZ), $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
go test -run '^$' -bench 'BenchmarkListenqCollectVsTalk|BenchmarkListenqPoller100Hz|BenchmarkTicker100Hz' \
	-benchtime 1x -count "${COUNT:-1}" -timeout 20m ./internal/signal/
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
