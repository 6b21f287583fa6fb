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
ITEMS=${ITEMS:-"kill:10000:1 kill:15000:1 killhold2s:10000:1 kill:2000:1 kill:6000:1 restart:10000:1 blip5s:10000:1
	kill:10000:2 kill:15000:2 restart:15000:1 killhold2s:10000:2 kill:2000:2 kill:6000:2 restart:10000:2
	kill:10000:3 kill:15000:3 blip5s:10000:2 restart:15000:2"}
mkdir -p "$OUT"
if [ -z "${SG:-}" ]; then
	SG="$OUT/stormguard"
	go build -o "$SG" ./cmd/stormguard || exit 1
fi
read -r -a strats <<<"${STRATS:-immediate full-jitter stormguard}"
for item in $ITEMS; do
	IFS=: read -r sc n round <<<"$item"
	k=$(((round - 1) % ${#strats[@]}))
	order=$(IFS=,; echo "${strats[*]:k},${strats[*]:0:k}" | sed 's/,$//')
	f="$OUT/lab_${sc}_${n}_r${round}.json"
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
	cmd="$SG storm --spawn --somaxconn 128 --clients $n $extra --period 3s --ramp 500 --warmup-timeout 120s --compare $order --json"
	echo "$(date -u +%T) queued $sc n=$n round=$round order=$order load $(cut -d' ' -f1-3 /proc/loadavg)"
	# shellcheck disable=SC2016 # expanded by the inner shell, once it holds the lock
	if flock "$LOCK" bash -c 'echo "$(date -u +%T) start load $(cut -d" " -f1-3 /proc/loadavg) cmd: $0" >&2; exec $0' "$cmd" >"$f.tmp" 2>"$f.err"; then
		mv "$f.tmp" "$f"
	else
		echo "  failed: $(tail -2 "$f.err")"
	fi
	echo "$(date -u +%T) done $sc n=$n round=$round load $(cut -d' ' -f1-3 /proc/loadavg)"
done
python3 bench/labcurve_table.py "$OUT"/lab_*.json
