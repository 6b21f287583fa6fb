#!/usr/bin/env bash
# bench/fdtable_stall.sh: how long a freshly started valkey-server stalls each time its descriptor table
# doubles (docs/benchmarks.md 8l, 11h). Linux grows a process's table by doubling it (expand_fdtable,
# fs/file.c), and a process whose table its threads share (valkey-server's background threads) waits
# one RCU grace period there (synchronize_rcu) with the calling thread blocked: the main thread, in
# accept(). A restarted server meets one such stall per doubling while its fleet comes back.
#
# Each run: a fresh valkey-server with the lab's flags, pinned to CPU 1, in a namespace of its own;
# `clientcost fdstall` on CPU 0 opens N connections, 64 in flight, each with one PING answered, and
# prints every pause >= 1 ms in the answers with the answers before it (the server's descriptors:
# its base ones + that many, +- 64) and its main thread's state, wchan and schedstat meanwhile.
# GROWN=1: the server through bench/fdtable/valkey-server (the table sized for 16,384 before any
# thread exists): the control, no doubling. BUSY=1: a busy loop on CPU 0 (the clients' CPU) meanwhile,
# as a fleet that keeps its CPU saturated does (the grace period waits for every CPU's quiescent state).
# Needs root and valkey-server.
#
#   LOCK=/tmp/stormguard-bench.lock RUNS=5 N=10000 bash bench/fdtable_stall.sh
#   LOCK=/tmp/stormguard-bench.lock RUNS=3 GROWN=1 bash bench/fdtable_stall.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "fdtable_stall.sh: needs root (network namespace)"; exit 0; }
command -v valkey-server >/dev/null || { echo "fdtable_stall.sh: needs valkey-server"; exit 0; }
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
go build -o "$OUT/clientcost" ./bench/clientcost
export OUT RUNS=${RUNS:-5} N=${N:-10000} GROWN=${GROWN:-} BUSY=${BUSY:-} NS=sg-fdstall-$$ PORT=7101
SERVER=valkey-server
[ -n "$GROWN" ] && SERVER="$PWD/bench/fdtable/valkey-server"
export SERVER
measure() {
	ip netns add "$NS"
	trap 'kill "$vp" 2>/dev/null; wait "$vp" 2>/dev/null; ip netns del "$NS" 2>/dev/null' EXIT
	vp=
	ip netns exec "$NS" ip link set lo up
	ip netns exec "$NS" sysctl -qw net.core.somaxconn=128
	for r in $(seq "$RUNS"); do
		echo "run $r ($([ -n "$GROWN" ] && echo grown || echo as installed)): load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%T) UTC"
		port=$((PORT + r))
		# The lab's flags (internal/sandbox, internal/lab/spawn.go); ip netns exec and taskset exec, so $! is the server.
		taskset -c 1 ip netns exec "$NS" "$SERVER" --port "$port" --bind "127.0.0.1 -::1" --save '' --appendonly no \
			--daemonize no --protected-mode no --maxclients 20000 --logfile "$OUT/fdstall-valkey.log" &
		vp=$!
		for _ in $(seq 50); do ip netns exec "$NS" valkey-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
		sleep 0.5 # its background threads are up
		echo "server $vp: $(grep -c . /proc/$vp/task/*/comm 2>/dev/null | wc -l) threads, $(grep FDSize /proc/$vp/status)"
		bp=
		if [ -n "${BUSY:-}" ]; then taskset -c 0 timeout 20 sh -c 'while :; do :; done' & bp=$!; fi
		VALKEY_PID=$vp ip netns exec "$NS" taskset -c 0 "$OUT/clientcost" fdstall "$port" "$N" || true
		[ -n "$bp" ] && { kill "$bp"; wait "$bp" 2>/dev/null || true; }
		kill "$vp"; wait "$vp" 2>/dev/null || true
		vp=
	done
	echo "load after: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%T) UTC"
}
if [ -n "${LOCK:-}" ]; then
	export -f measure
	flock "$LOCK" bash -c measure
else
	measure
fi
