#!/usr/bin/env bash
# The defuse safety matrix (TestIntegrationSafetyMatrix) under CPU and disk
# load: how long after the TTL each cell's restore process removed its state
# entry and exited. Results go to docs/defuse.md ("Safety test matrix").
# Needs root and valkey-server. Each run builds a niced `go build -a ./...`
# loop beside the matrix (LOADS loops, default 2, each with its own
# GOCACHE under a temporary directory, stopped when the run ends and at most
# LOAD_SECONDS, default 300, after it starts), then prints the distribution
# of the per-cell lifetimes the test logs ("restorer: entry gone X, process
# exited Y after the TTL"). RUNS (3) runs; LOCK=/tmp/stormguard-bench.lock
# runs each one under "flock $LOCK". The test binary is race-built, as
# `make test` runs it.
#
#   RUNS=3 LOADS=2 LOCK=/tmp/stormguard-bench.lock ./bench/defuse-matrix.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3} LOADS=${LOADS:-2} LOAD_SECONDS=${LOAD_SECONDS:-300}
work=$(mktemp -d /tmp/stormguard-defuse-matrix.XXXXXX)
trap 'rm -rf "$work"' EXIT
go test -race -c -o "$work/defuse.test" ./internal/defuse/
locked() { if [ -n "${LOCK:-}" ]; then flock "$LOCK" "$@"; else "$@"; fi; }

one_run() { # $1 = log file
	setsid bash -c 'for j in $(seq '"$LOADS"'); do
		( export GOCACHE='"$work"'/gocache$j; end=$((SECONDS+'"$LOAD_SECONDS"'))
		  while [ $SECONDS -lt $end ]; do timeout $((end-SECONDS+1)) nice -n 19 go build -a ./... >/dev/null 2>&1 || true; done ) &
	done; wait' &
	local loadpid=$!
	sleep 5 # let the load build up
	echo "start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >"$1"
	local rc=0
	(cd internal/defuse && STORMGUARD_REQUIRE_INTEGRATION=1 "$work/defuse.test" -test.count=1 \
		-test.run TestIntegrationSafetyMatrix -test.v -test.timeout 15m) >>"$1" 2>&1 || rc=$?
	echo "end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) rc=$rc" >>"$1"
	kill -- -"$loadpid" 2>/dev/null || true
	wait "$loadpid" 2>/dev/null || true
	return 0
}

# summary LOG...: distribution (seconds) of the restorer exit after the TTL
summary() {
	grep -ho 'restorer: entry gone [^ ]*, process exited [^ ]* after the TTL' "$@" |
		awk '{ v = $7; s = v + 0
			if (v ~ /ms$/) s /= 1000; else if (v ~ /µs$/) s /= 1e6; else if (v ~ /ns$/) s /= 1e9
			print s }' | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) { print "no restorer lifetimes logged"; exit }
			over = 0; for (i = 1; i <= NR; i++) if (a[i] > 2) over++
			p = int(NR * 0.9); if (p < 1) p = 1
			printf "restorer exited after the TTL: n=%d min=%.3fs median=%.3fs p90=%.3fs max=%.3fs, over 2 s: %d\n",
				NR, a[1], a[int((NR + 1) / 2)], a[p], a[NR], over }'
}

for i in $(seq "$RUNS"); do
	log="$work/run$i.log"
	locked bash -c "$(declare -f one_run); LOADS=$LOADS LOAD_SECONDS=$LOAD_SECONDS work=$work one_run $log"
	head -1 "$log"; tail -1 "$log"
	grep -E '^\s*--- FAIL' "$log" || true
	summary "$log"
done
echo "all runs:"
summary "$work"/run*.log
