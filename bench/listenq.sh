#!/usr/bin/env bash
# Accept-queue (listenq) source benchmarks; results go to docs/benchmarks.md.
#
# Needs root and valkey-server: each benchmark builds a network namespace with
# a real Valkey (internal/sandbox). The 20,000-connection cases hold their
# client sockets in helper processes (the test binary re-run as
# TestListenqConnHolder), since the fd limit here is a hard 20,000.
#
#   BenchmarkListenqCollectVsSS  40 samples paced at 500 ms: one Collect
#                                  (LISTEN + SYN_RECV/ESTABLISHED counts within
#                                  their CPU budget, IPv4 and IPv6) then one run
#                                  of `ss -Hln sport = :6379` and
#                                  `ss -anH state syn-recv | wc -l`, in CPU time;
#                                  mean and worst Collect vs mean ss
#   BenchmarkListenqSample10ms     `stormguard sample --interval 10ms --count 50`
#                                  (the built binary) with 18,000 connections vs
#                                  50 runs of the same two ss commands, CPU of
#                                  the child processes, 3 rounds; fails unless
#                                  every sample has listen.depth
#   BenchmarkListenqPoller100Hz    CPU share of the 100 Hz poller over 10 s, and
#                                  in the same round 10 s each of its bare
#                                  wake-up (the same timerfd, no poll) and of a
#                                  do-nothing Go ticker at 100 Hz
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== listenq benchmarks ($(date -u +%FT%TZ), $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
go test -run '^$' -bench 'BenchmarkListenqCollectVsSS|BenchmarkListenqPoller100Hz' \
	-benchtime 1x -count "${COUNT:-1}" -timeout 20m ./internal/source/
go test -run '^$' -bench 'BenchmarkListenqSample10ms' -benchtime 3x -timeout 20m ./internal/source/
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
