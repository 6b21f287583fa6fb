#!/usr/bin/env bash
# stormguard replay speed: a 15-minute capture replayed from disk (read,
# gzip, JSON decode, detector), the target being under 2 s; results go to
# docs/replay.md#speed. No root needed.
#
#   BenchmarkReplay15Min          synthetic samples every 100 ms for 15 min (9,000: the worst case)
#   BenchmarkReplay15MinRecorded  a corpus recording (real samples) tiled to 15 min
set -euo pipefail
cd "$(dirname "$0")/.."
uptime
go test -run '^$' -bench 'Replay15Min' -benchtime "${BENCHTIME:-3x}" -benchmem ./internal/replay
