#!/usr/bin/env bash
# bench/labcurve.sh: the storm lab curve of docs/benchmarks.md section 8 (immediate, full-jitter and
# stormguard, a fresh server per strategy, the order rotated by round), one `storm --compare` per
# bench-lock hold, released between commands so that others can measure.
#
#   bash bench/labcurve.sh          # make bench: the whole curve of sections 8d-8e (~40 min of runs), then its tables
#   SG=bin/stormguard OUT=/tmp/curve ITEMS="kill:10000:1 kill:15000:1 killhold2s:10000:1" bash bench/labcurve.sh
#
# SG: the binary (default: built from this tree into OUT). SERVER_CPUS (default 1) adds --server-cpus 1
# to every run (valkey-server on CPU 1, the clients on the others: the setting of section 8d on, docs/lab.md
# "The lab curve's CPUs"); SERVER_CPUS= (empty) runs unpinned as 8a-8c. LOCK: the bench lock file.
# STRATS (default "immediate full-jitter stormguard"): the strategies compared, e.g. "immediate stormguard"
# for section 8e's what-if runs of a non-default dialer (SG=a binary built with other defaults).
# INSTANCES=K (default: unset, one instance per client): adds --instances K, the clients split over K
# application instances that each share one dialer (a pooled process), e.g. INSTANCES=150 for 15,000
# clients in pools of 100. Output files then carry _iK in their name.
# BUSY=K (default 0): a busy host. K processes spinning on the CPU (a shell loop, nice 0, not pinned,
# so they compete with the clients and with valkey-server as a neighbour's busy processes would) start
# just before each `storm` command, inside its lock hold, and are killed right after it; each is also
# bounded by `timeout BUSY_MAX` (default 900 s). The .err's last line then says the load at the end
# and the CPU seconds the spinners got (section 8f). Every run's .err also has one line per
# valkey-server (per strategy): the seconds its main thread ran and waited on the run queue.
# ITEMS: scenario:clients:round, scenario one of
#   kill          --scenario kill --hold 6s
#   killcpu1      kill, always pinned (docs/lab.md's probe against unpinned kill runs: SERVER_CPUS=)
#   killhold2s    --scenario kill --hold 2s
#   restart       --scenario restart --down 1s --hold 6s
#   blip5s        --scenario blip --blip 5s --hold 6s
# Each run writes OUT/lab_<scenario>_<clients>_r<round>.json and .json.err; the .err's first line is the
# time the command got the lock and the load average then. An existing JSON is not run again.
# bench/labcurve_table.py turns the JSON files into the tables of section 8 (it runs at the end).
# Paths (SG, OUT) are relative to the repository's root.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/labcurve}
LOCK=${LOCK:-/tmp/stormguard-bench.lock}
SERVER_CPUS=${SERVER_CPUS-1}
BUSY=${BUSY:-0}
INSTANCES=${INSTANCES:-}
BUSY_MAX=${BUSY_MAX:-900}
ITEMS=${ITEMS:-"kill:10000:1 kill:15000:1 killhold2s:10000:1 kill:2000:1 kill:6000:1 restart:10000:1 blip5s:10000:1
	kill:10000:2 kill:15000:2 restart:15000:1 killhold2s:10000:2 kill:2000:2 kill:6000:2 restart:10000:2
	kill:10000:3 kill:15000:3 blip5s:10000:2 restart:15000:2"}
mkdir -p "$OUT"
if [ -z "${SG:-}" ]; then
	SG="$OUT/stormguard"
	go build -o "$SG" ./cmd/stormguard || exit 1
fi
read -r -a strats <<<"${STRATS:-immediate full-jitter stormguard}"
# inner runs one storm command ($0) once the lock is held: the start line (time, load, command) to
# stderr; with BUSY ($1 > 0) the spinners around it (bounded by timeout $2); and every 0.2 s the main
# thread's schedstat (ns on the CPU, ns runnable but waiting on the run queue) of each valkey-server the
# storm spawned (one per strategy, in order), so that the .err says how much of its CPU Valkey waited
# for: INFO's used_cpu (what the dialer's server-told rate reads) counts only the time it ran.
read -r -d '' inner <<'INNER'
echo "$(date -u +%T) start load $(cut -d' ' -f1-3 /proc/loadavg) cmd: $0" >&2
spin=()
for _ in $(seq "$1"); do timeout "$2" bash -c 'while :; do :; done' & spin+=($!); done
t=$(date +%s.%N)
$0 &
storm=$!
sched=$(mktemp)
while kill -0 "$storm" 2>/dev/null; do
	for p in $(pgrep -P "$storm" -x valkey-server); do
		read -r run wait _ <"/proc/$p/schedstat" 2>/dev/null && echo "$p $run $wait $(date +%s.%N)"
	done
	sleep 0.2
done >"$sched"
wait "$storm"
rc=$?
awk '!($1 in first) { first[$1] = $4; order[++n] = $1 } { run[$1] = $2; wait[$1] = $3; last[$1] = $4 }
	END { for (i = 1; i <= n; i++) { p = order[i]
		printf "valkey-server %d of %d: ran %.1f s, waited %.1f s on the run queue, over %.0f s seen\n", i, n, run[p] / 1e9, wait[p] / 1e9, last[p] - first[p] } }' "$sched" >&2
rm -f "$sched"
if [ "$1" -gt 0 ]; then
	# the spinners' CPU (utime + stime of the loops under timeout) before they are stopped
	cpu=0
	for p in "${spin[@]}"; do
		for c in $(cat "/proc/$p/task/$p/children" 2>/dev/null); do
			cpu=$((cpu + $(cut -d' ' -f14,15 "/proc/$c/stat" 2>/dev/null | tr ' ' +)))
		done
	done
	kill "${spin[@]}" 2>/dev/null
	wait "${spin[@]}" 2>/dev/null
	echo "$(date -u +%T) end load $(cut -d' ' -f1-3 /proc/loadavg) busy $1 spinners got $(echo "scale=1; $cpu / $(getconf CLK_TCK)" | bc) CPU-s in $(echo "$(date +%s.%N) - $t" | bc | cut -d. -f1) s" >&2
fi
exit $rc
INNER
for item in $ITEMS; do
	IFS=: read -r sc n round <<<"$item"
	k=$(((round - 1) % ${#strats[@]}))
	order=$(IFS=,; echo "${strats[*]:k},${strats[*]:0:k}" | sed 's/,$//')
	f="$OUT/lab_${sc}_${n}${INSTANCES:+_i$INSTANCES}_r${round}.json"
	[ -s "$f" ] && continue
	case $sc in
	kill) extra="--scenario kill --hold 6s" ;;
	killcpu1) extra="--scenario kill --hold 6s" && [ -z "$SERVER_CPUS" ] && extra="$extra --server-cpus 1" ;;
	killhold2s) extra="--scenario kill --hold 2s" ;;
	restart) extra="--scenario restart --down 1s --hold 6s" ;;
	blip5s) extra="--scenario blip --blip 5s --hold 6s" ;;
	*) echo "labcurve: unknown scenario $sc" >&2; exit 2 ;;
	esac
	[ -n "$SERVER_CPUS" ] && extra="$extra --server-cpus $SERVER_CPUS"
	[ -n "$INSTANCES" ] && extra="$extra --instances $INSTANCES"
	cmd="$SG storm --spawn --somaxconn 128 --clients $n $extra --period 3s --ramp 500 --warmup-timeout 120s --compare $order --json"
	echo "$(date -u +%T) queued $sc n=$n round=$round order=$order load $(cut -d' ' -f1-3 /proc/loadavg)"
	if flock "$LOCK" bash -c "$inner" "$cmd" "$BUSY" "$BUSY_MAX" >"$f.tmp" 2>"$f.err"; then
		mv "$f.tmp" "$f"
	else
		echo "  failed: $(tail -2 "$f.err")"
	fi
	echo "$(date -u +%T) done $sc n=$n round=$round load $(cut -d' ' -f1-3 /proc/loadavg)"
done
python3 bench/labcurve_table.py "$OUT"/lab_*.json
