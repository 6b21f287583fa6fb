#!/usr/bin/env bash
# A restart's killed server, measured (docs/simulate.md `restart`,
# docs/benchmarks.md 11g): where a restart's listen overflows come from.
#   ONLY=exit (default): a valkey-server pinned to CPU 1 in a namespace of
#     its own holds N idle connections (SIZES, "10000 15000"; three runs
#     each) from a client on CPU 0 and is SIGKILLed: how long its exit
#     takes per connection, and whether a probe SYN is refused before the
#     last close (bench/simulate_exit.py; simulate's --exit-cost).
#   ONLY=storm: one lab storm (SCENARIO restart or kill, CLIENTS 10000,
#     STRATEGY immediate; the lab curve's flags) with the namespace's TCP
#     counters and softnet_stat read every ~5 ms (bench/storm_tcp_sampler.py):
#     when the overflows, SYN retransmits and refused connects happen.
# LOCK=FILE: hold a bench lock while measuring. OUT (bench/out/exit).
# Needs root, valkey-server and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "simulate_exit.sh: needs root (network namespace)"; exit 0; }
command -v valkey-server >/dev/null || { echo "simulate_exit.sh: needs valkey-server"; exit 0; }
OUT=${OUT:-bench/out/exit}
mkdir -p "$OUT"
locked() { if [ -n "${LOCK:-}" ]; then flock "$LOCK" "$@"; else "$@"; fi; }

if [ "${ONLY:-exit}" = exit ]; then
	NS=sg-exitcost-$$
	ip netns add "$NS"
	trap 'ip netns del "$NS" 2>/dev/null' EXIT
	ip netns exec "$NS" ip link set lo up
	ip netns exec "$NS" sysctl -qw net.core.somaxconn=4096
	exits() {
		echo "load before: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%T) UTC"
		for n in ${SIZES:-10000 15000}; do
			for r in 1 2 3; do
				VALKEY_LOG="$OUT/exit-valkey.log" timeout 120 python3 bench/simulate_exit.py "$NS" $((7300 + r)) "$n" || true
				sleep 0.5
			done
		done
		echo "load after: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%T) UTC"
	}
	export -f exits; export NS OUT SIZES
	ulimit -n "$(ulimit -Hn)"
	locked bash -c exits
	exit 0
fi

go build -o "$OUT/stormguard" ./cmd/stormguard
N=${CLIENTS:-10000}
SC=${SCENARIO:-restart}
S=${STRATEGY:-immediate}
T="$OUT/${SC}_${N}_${S}_$(date -u +%H%M%S)"
storm() {
	echo "$(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
	down=(); [ "$SC" = restart ] && down=(--down 1s)
	"$OUT/stormguard" storm --spawn --somaxconn 128 --clients "$N" --scenario "$SC" "${down[@]}" --hold 6s --server-cpus 1 \
		--period 3s --ramp 500 --warmup-timeout 120s --strategy "$S" --json >"$T.json" &
	sp=$!
	# The sampler enters the storm's namespace: the lab kills it with the namespace.
	taskset -c 1 python3 bench/storm_tcp_sampler.py "$sp" "$T.samp" &
	wait "$sp"
	wait || true
	echo "$(date -u +%T) end load $(cut -d' ' -f1-3 /proc/loadavg)"
}
export -f storm; export OUT N SC S T
locked bash -c storm
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r=r[0] if isinstance(r,list) else r; print({k: r.get(k) for k in ('strategy','clients','scenario','listen_overflows','connect_attempts','failed_commands','time_to_recover_ms')})" "$T.json"
python3 bench/storm_tcp_sampler.py --deltas "$T.samp" 0.02
