#!/usr/bin/env bash
# simulate vs lab (docs/benchmarks.md, "simulate against the lab"; docs/simulate.md):
#  1. the simulator's speed: 100,000 clients per strategy on one core
#     (go test -bench Simulate100k -cpu 1);
#  2. the lab curve: kill-all at somaxconn 128, immediate, full-jitter and
#     the stormguard dialer, a fresh server per strategy, ROUNDS runs per
#     fleet size;
#  3. calibration check: `simulate --calibrate` on the first size's
#     immediate run, then the prediction for every (size, strategy) next to
#     the lab's: relative error on peak connect rate, overflows and time to
#     recover (target: within 20%).
# Needs root and valkey-server for parts 2-3. Knobs (environment):
#   SIZES ("2000 6000 10000 15000") ROUNDS (3) STRATEGIES (immediate,full-jitter,stormguard)
#   HOLD (6s) SCENARIO (kill) OUT (bench/out) ONLY=speed: just part 1
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"2000 6000 10000 15000"}
ROUNDS=${ROUNDS:-3}
STRATEGIES=${STRATEGIES:-immediate,full-jitter,stormguard}
HOLD=${HOLD:-6s}
SCENARIO=${SCENARIO:-kill}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== 1. simulator speed (one core)"
go test -run '^$' -bench 'Simulate100k' -cpu 1 -benchtime 1x ./internal/simulate
[ "${ONLY:-}" = speed ] && exit 0

[ "$(id -u)" = 0 ] || { echo "simulate.sh: parts 2-3 need root (network namespaces)"; exit 0; }
command -v valkey-server >/dev/null || { echo "simulate.sh: parts 2-3 need valkey-server"; exit 0; }
go build -o "$OUT/stormguard" ./cmd/stormguard
SG="$OUT/stormguard"

echo "== 2. lab curve: $SCENARIO, somaxconn 128, sizes $SIZES, $ROUNDS rounds, hold $HOLD"
for round in $(seq "$ROUNDS"); do
	for n in $SIZES; do
		f="$OUT/lab_${SCENARIO}_${n}_r${round}.json"
		echo "$(date -u +%T) n=$n round=$round load $(cut -d' ' -f1 /proc/loadavg)"
		"$SG" storm --spawn --somaxconn 128 --clients "$n" --scenario "$SCENARIO" --hold "$HOLD" \
			--warmup-timeout 120s --compare "$STRATEGIES" --json >"$f" || echo "  (failed: see above)"
	done
done

echo "== 3. calibrate on the first size, predict the others"
first=$(echo "$SIZES" | awk '{print $1}')
python3 - "$OUT" "$SG" "$SCENARIO" "$first" "$HOLD" $SIZES <<'PY'
import glob, json, subprocess, sys, statistics as st
out, sg, scen, first, hold, sizes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
def lab(n):
    rows = {}
    for f in sorted(glob.glob(f"{out}/lab_{scen}_{n}_r*.json")):
        try:
            for r in json.load(open(f)):
                rows.setdefault(r["strategy"], []).append(r)
        except Exception:
            pass
    return rows
cal = [r for r in lab(first).get("immediate", []) if r.get("time_to_recover_ms")]
if not cal:
    sys.exit("no usable lab run to calibrate on")
calfile = f"{out}/calibration_input.json"
json.dump(cal[0], open(calfile, "w"))
print(f"calibrated on {first} clients, immediate, run 1")
print("size strategy     lab(peak/ovf/ttr, median of runs)   sim(peak/ovf/ttr)   rel.err peak/ovf/ttr")
for n in sizes:
    for s, runs in lab(n).items():
        ok = [r for r in runs if r.get("time_to_recover_ms") and r.get("listen_overflows") is not None]
        if not ok:
            continue
        med = lambda k: st.median(r[k] for r in ok)
        sim = json.loads(subprocess.run([sg, "simulate", "--calibrate", calfile, "--clients", str(n), "--strategy", s,
                                         "--scenario", scen, "--hold", hold, "--json"],
                                        capture_output=True, text=True, check=True).stdout)
        def rel(a, b): return (a - b) / max(b, 1)
        ttr = sim["time_to_recover_ms"] or float("inf")
        print(f"{n:>5} {s:<12} {med('peak_connects_per_sec'):>7.0f}/{med('listen_overflows'):>6.0f}/{med('time_to_recover_ms'):>6.0f}"
              f"   {sim['peak_connects_per_sec']:>7}/{sim['listen_overflows']:>6}/{ttr:>6}"
              f"   {rel(sim['peak_connects_per_sec'], med('peak_connects_per_sec')):+.2f}/"
              f"{rel(sim['listen_overflows'], med('listen_overflows')):+.2f}/{rel(ttr, med('time_to_recover_ms')):+.2f}")
PY
