#!/usr/bin/env bash
# simulate vs lab (docs/benchmarks.md, "simulate against the lab"; docs/simulate.md):
#  1. the simulator's speed: 100,000 clients per strategy on one core
#     (go test -bench Simulate100k -cpu 1);
#  2. the lab curve: kill-all at somaxconn 128, immediate, full-jitter and
#     the stormguard dialer, a fresh server per strategy, ROUNDS runs per
#     fleet size;
#  3. calibration check: `simulate --calibrate` on every lab run at one
#     size (CALIBRATE_ON), then the model's prediction for every (size,
#     strategy) next to the lab's median: sim/lab on peak connect rate,
#     overflows and time to recover (target: within 0.8-1.2 at the sizes not
#     calibrated on), and the lab's own yardstick: each lab run against the
#     median of its cell's other runs (leave one out), the same 0.8-1.2 test.
#     The model runs this tree's strategies (the dialer's code included):
#     check lab JSON made by the same code, or the stormguard rows compare
#     two different dialers.
# Needs root and valkey-server for parts 2-3. Knobs (environment):
#   SIZES ("1000 2000 4000 6000 10000 15000": at PERIOD 3s and RAMP 500 a
#   2-core lab machine held these fleets steady before the kill; runs that
#   were not are left out of the check, docs/simulate.md) ROUNDS (3)
#   STRATEGIES (immediate,full-jitter,stormguard)
#   PERIOD (3s: at 100ms, 6,000+ clients ask more PINGs than a small machine
#   answers and never finish warming up, and at 1s a 2-core machine shared
#   with other work still could not hold 10,000-15,000 clients steady before
#   the kill; the lab's clients notice a kill at once whatever the period)
#   RAMP (500 clients started per second during warm-up: at the default
#   1,000/s the warm-up of 10,000+ clients overlapped their first PINGs and
#   needed 1.5-7x more dials than clients) HOLD (6s) SCENARIO (kill)
#   OUT (bench/out)
#   CALIBRATE_ON (4000: the size whose runs, every strategy, calibrate the model)
#   SEEDS (5: the model's figure for a cell is the median of this many seeds)
#   LOCK (a file: every storm runs under "flock $LOCK", so that only one heavy
#   run uses a shared machine at a time) ONLY=speed: just part 1;
#   ONLY=lab: just part 2; ONLY=check: just part 3, on the JSON already in OUT
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 2000 4000 6000 10000 15000"}
ROUNDS=${ROUNDS:-3}
STRATEGIES=${STRATEGIES:-immediate,full-jitter,stormguard}
PERIOD=${PERIOD:-3s}
RAMP=${RAMP:-500}
HOLD=${HOLD:-6s}
SCENARIO=${SCENARIO:-kill}
OUT=${OUT:-bench/out}
CALIBRATE_ON=${CALIBRATE_ON:-4000}
SEEDS=${SEEDS:-5}
mkdir -p "$OUT"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
locked() { if [ -n "${LOCK:-}" ]; then flock "$LOCK" "$@"; else "$@"; fi; }

if [ "${ONLY:-}" != check ] && [ "${ONLY:-}" != lab ]; then
echo "== 1. simulator speed (one core)"
locked go test -run '^$' -bench 'Simulate100k' -cpu 1 -benchtime 1x ./internal/simulate
[ "${ONLY:-}" = speed ] && exit 0
fi

[ "$(id -u)" = 0 ] || { echo "simulate.sh: parts 2-3 need root (network namespaces)"; exit 0; }
command -v valkey-server >/dev/null || { echo "simulate.sh: parts 2-3 need valkey-server"; exit 0; }
go build -o "$OUT/stormguard" ./cmd/stormguard
SG="$OUT/stormguard"

if [ "${ONLY:-}" != check ]; then
echo "== 2. lab curve: $SCENARIO, somaxconn 128, sizes $SIZES, $ROUNDS rounds, period $PERIOD, ramp $RAMP/s, hold $HOLD"
IFS=, read -r -a strats <<<"$STRATEGIES"
for round in $(seq "$ROUNDS"); do
	# Rotate the order of the strategies from round to round: each gets a
	# fresh server, but the machine's load drifts.
	k=$(( (round - 1) % ${#strats[@]} ))
	order=$(IFS=,; echo "${strats[*]:k},${strats[*]:0:k}" | sed 's/,$//')
	for n in $SIZES; do
		f="$OUT/lab_${SCENARIO}_${n}_r${round}.json"
		echo "$(date -u +%T) n=$n round=$round order=$order load $(cut -d' ' -f1 /proc/loadavg)"
		locked "$SG" storm --spawn --somaxconn 128 --clients "$n" --scenario "$SCENARIO" --period "$PERIOD" --ramp "$RAMP" --hold "$HOLD" \
			--warmup-timeout 120s --compare "$order" --json >"$f" || echo "  (failed: see above)"
		echo "$(date -u +%T) done, load $(cut -d' ' -f1 /proc/loadavg)"
	done
done
fi
[ "${ONLY:-}" = lab ] && exit 0

echo "== 3. calibrate on $CALIBRATE_ON clients, predict every size"
python3 - "$OUT" "$SG" "$SCENARIO" "$CALIBRATE_ON" "$HOLD" "$PERIOD" "$SEEDS" $SIZES <<'PY'
import glob, json, math, subprocess, sys, statistics as st
out, sg, scen, cal_n, hold, period, seeds, sizes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7]), sys.argv[8:]
KEYS = ("peak_connects_per_sec", "listen_overflows", "time_to_recover_ms")
NAMES = ("peak", "ovf", "ttr")
def lab(n):
    rows = {}
    for f in sorted(glob.glob(f"{out}/lab_{scen}_{n}_r*.json")):
        try:
            for r in json.load(open(f)):
                rows.setdefault(r["strategy"], []).append(r)
        except Exception:
            pass
    return rows
def steady(r):
    # The fleet was steady before the kill: warmed up with about one dial
    # per client and every client connected when it was killed.
    n = r["clients"]
    return (r.get("warmup_connect_attempts") or 0) <= 1.05 * n and (r.get("killed_clients") or n) >= 0.99 * n
def usable(r):
    return r.get("time_to_recover_ms") and r.get("listen_overflows") is not None and steady(r)
def ratio(k, a, b):
    # Overflows get +50 on both sides, so that 0 against 3 is not an infinite error.
    if a is None:
        return float("inf")
    return (a + 50) / (b + 50) if k == "listen_overflows" else a / max(b, 1)
ok20 = lambda x: 0.8 <= x <= 1.2
cal = [r for runs in lab(cal_n).values() for r in runs if usable(r)]
if not cal:
    sys.exit(f"no usable lab run at {cal_n} clients to calibrate on")
calfile = f"{out}/calibration_input.json"
json.dump(cal, open(calfile, "w"))
common = ["--scenario", scen, "--hold", hold, "--period", period, "--somaxconn", "128", "--json"]
fit = json.loads(subprocess.run([sg, "simulate", "--calibrate", calfile, "--clients", cal_n, "--strategy", "immediate"] + common,
                                capture_output=True, text=True, check=True).stdout)
m = fit["model"]
print(f"calibrated on {len(cal)} lab runs at {cal_n} clients (every strategy): conn_cost {m['conn_cost_ns']/1000:.1f}us,"
      f" cmd_cost {m['cmd_cost_ns']/1000:.1f}us, kill_cost {m['kill_cost_ns']/1000:.0f}us, notice_cost {m['notice_cost_ns']/1000:.0f}us,"
      f" dial_cost {m['dial_cost_ns']/1000:.0f}us, client_burst {m['client_burst']:.2f}, client_share {m['client_share']:.1f}, fit error {fit['calibration']['error']:.2f}")
mflags = ["--conn-cost", f"{m['conn_cost_ns']}ns", "--cmd-cost", f"{m['cmd_cost_ns']}ns", "--client-dial-rate", str(m["client_dial_rate"]),
          "--kill-cost", f"{m['kill_cost_ns']}ns", "--notice-cost", f"{m['notice_cost_ns']}ns", "--dial-cost", f"{m['dial_cost_ns']}ns",
          "--client-burst", str(m["client_burst"]), "--client-share", str(m["client_share"])]
print(f"model: median of {seeds} seeds; lab: median of the cell's runs; ratio sim/lab (overflows as (x+50)/(y+50)); "
      "lab l-o-o: each run against the median of the cell's other runs, worst of the cell")
print("size   strategy      runs  lab median peak/ovf/ttr_ms    sim peak/ovf/ttr_ms     sim/lab peak ovf ttr   lab l-o-o peak ovf ttr   (lab range ovf; ttr)")
# tallies per (strategy, metric): [model within 20%, model cells] out of sample;
# [lab runs within 20% of the others' median, lab runs] at the sizes checked.
model, labself = {}, {}
for n in sizes:
    for s, runs in sorted(lab(n).items()):
        ok = [r for r in runs if usable(r)]
        if len(ok) < len(runs):
            print(f"{n:>6} {s:<13} {len(runs) - len(ok)} run(s) left out: not steady before the kill or not recovered")
        if not ok:
            continue
        med = {k: st.median(r[k] for r in ok) for k in KEYS}
        sims = [json.loads(subprocess.run([sg, "simulate", "--clients", str(n), "--strategy", s, "--seed", str(seed)] + common + mflags,
                                          capture_output=True, text=True, check=True).stdout) for seed in range(1, seeds + 1)]
        inf = float("inf")
        sim = {k: st.median(inf if x[k] is None else x[k] for x in sims) for k in KEYS}
        sim = {k: None if v == inf else int(v) for k, v in sim.items()}
        ratios = [ratio(k, sim[k], med[k]) for k in KEYS]
        loo = ["   -"] * 3
        if len(ok) >= 2:
            for i, k in enumerate(KEYS):
                worst = 1.0
                for j, r in enumerate(ok):
                    others = st.median(o[k] for jj, o in enumerate(ok) if jj != j)
                    x = ratio(k, r[k], others)
                    if n != cal_n:
                        t = labself.setdefault((s, NAMES[i]), [0, 0])
                        t[0] += ok20(x); t[1] += 1
                    if abs(math.log(x)) > abs(math.log(worst)):
                        worst = x
                loo[i] = f"{worst:4.2f}"
        tag = " (calibration size)" if n == cal_n else ""
        if n != cal_n:
            for i, x in enumerate(ratios):
                t = model.setdefault((s, NAMES[i]), [0, 0])
                t[0] += ok20(x); t[1] += 1
        ovfs = sorted(r["listen_overflows"] for r in ok); ttrs = sorted(r["time_to_recover_ms"] for r in ok)
        ttr = sim["time_to_recover_ms"] or "-"
        print(f"{n:>6} {s:<13} {len(ok):>4}  {med['peak_connects_per_sec']:>7.0f}/{med['listen_overflows']:>6.0f}/{med['time_to_recover_ms']:>6.0f}"
              f"    {sim['peak_connects_per_sec']:>7}/{sim['listen_overflows']:>6}/{ttr:>6}"
              f"     {ratios[0]:4.2f} {ratios[1]:4.2f} {ratios[2]:4.2f}     {loo[0]} {loo[1]} {loo[2]}   ({ovfs[0]}-{ovfs[-1]}; {ttrs[0]}-{ttrs[-1]}){tag}")
def tally(t, strat=None, name=None):
    a = b = 0
    for (s, k), (x, y) in t.items():
        if (strat is None or s == strat) and (name is None or k == name):
            a += x; b += y
    return f"{a:>2} of {b:<3}" if b else "   -     "
strats = sorted({s for s, _ in model})
print("within 0.8-1.2, out of sample: model (its median against the lab's median) | lab (a run against the median of its cell's other runs)")
print(f"{'':13} {'peak':>21} {'overflows':>21} {'time to recover':>21} {'all':>21}")
for s in strats + [None]:
    cols = [f"{tally(model, s, k)} | {tally(labself, s, k)}" for k in NAMES] + [f"{tally(model, s)} | {tally(labself, s)}"]
    print(f"{s or 'all':13} " + " ".join(f"{c:>21}" for c in cols))
PY
