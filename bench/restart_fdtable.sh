#!/usr/bin/env bash
# bench/restart_fdtable.sh: restarts with the new valkey-server's descriptor table grown before its
# threads start (bench/fdtable/valkey-server first in PATH) against valkey-server as installed,
# interleaved, `immediate` vs `stormguard`, one storm per bench-lock hold (bench/labcurve.sh);
# docs/benchmarks.md section 8m.
#
#   bash bench/restart_fdtable.sh                       # 6,000 clients, rounds 1-3 grown, 1-2 as installed
#   N=10000 ROUNDS=2 SG=bin/stormguard OUT=/tmp/fd bash bench/restart_fdtable.sh
#
# Files: OUT/grown/lab_restart_N_rK.json and OUT/plain/...; tables at the end (bench/labcurve_table.py).
set -u
cd "$(dirname "$0")/.."
N=${N:-6000}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-bench/out/restart_fdtable}
mkdir -p "$OUT"
if [ -z "${SG:-}" ]; then
	SG="$OUT/stormguard"
	go build -o "$SG" ./cmd/stormguard || exit 1
fi
export SG SERVER_CPUS=1 STRATS="immediate stormguard"
for r in $(seq "$ROUNDS"); do
	PATH="$PWD/bench/fdtable:$PATH" OUT="$OUT/grown" ITEMS="restart:$N:$r" bash bench/labcurve.sh >/dev/null
	[ "$r" = "$ROUNDS" ] && break
	OUT="$OUT/plain" ITEMS="restart:$N:$r" bash bench/labcurve.sh >/dev/null
done
for d in grown plain; do
	echo "## $d"
	python3 bench/labcurve_table.py "$OUT/$d"/lab_*.json
done
