#!/usr/bin/env bash
# bench/blip_diag.sh: one lab storm (the lab curve's flags, --progress) with the server namespace's TCP
# counters read every ~5-10 ms (bench/netns_sampler.py), then a per-100 ms (STEP) timeline per strategy
# from the blip's start (bench/netns_timeline.py): where the listen overflows, SYN retransmits and the
# fleet's connects fall (docs/benchmarks.md 8j).
#
#   SG=bin/stormguard OUT=/tmp/diag/r1 ORDER=stormguard,immediate LOCK=/tmp/stormguard-bench.lock bash bench/blip_diag.sh
#
# SG (default: built into OUT's directory), N (10000), SCENARIO ("--scenario blip --blip 5s --hold 6s"),
# ORDER (the --compare list), STEP (ms, 100), LOCK (hold a bench lock for the storm). Needs root,
# valkey-server and python3. Writes OUT.json, OUT.err (stderr stamped with the wall time), OUT.samples.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "blip_diag.sh: needs root (network namespace)"; exit 0; }
OUT=${OUT:-bench/out/blipdiag/r1}
mkdir -p "$(dirname "$OUT")"
if [ -z "${SG:-}" ]; then
	SG="$(dirname "$OUT")/stormguard"
	go build -o "$SG" ./cmd/stormguard
fi
export SG OUT N=${N:-10000} SCENARIO=${SCENARIO:-"--scenario blip --blip 5s --hold 6s"} ORDER=${ORDER:-stormguard,immediate}
run() {
	echo "$(date -u +%T) start load $(cut -d' ' -f1-3 /proc/loadavg) cmd: $SG storm $N $SCENARIO $ORDER" >"$OUT.err"
	# shellcheck disable=SC2086
	"$SG" storm --spawn --somaxconn 128 --clients "$N" $SCENARIO --server-cpus 1 --period 3s --ramp 500 \
		--warmup-timeout 120s --compare "$ORDER" --json --progress >"$OUT.json" \
		2> >(python3 -u -c 'import sys, time
for l in sys.stdin: sys.stdout.write(f"{time.time():.4f} {l}"); sys.stdout.flush()' >>"$OUT.err") &
	local pid=$!
	python3 bench/netns_sampler.py "$pid" "$OUT.samples" &
	local sp=$!
	wait "$pid"
	wait "$sp"
	echo "$(date -u +%T) end load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT.err"
}
export -f run
if [ -n "${LOCK:-}" ]; then flock "$LOCK" bash -c run; else bash -c run; fi
python3 bench/netns_timeline.py "$OUT" "${STEP:-100}"
