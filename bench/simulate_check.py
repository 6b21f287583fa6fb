#!/usr/bin/env python3
"""simulate vs lab: the calibration check of bench/simulate.sh (part 3).

Calibrates `stormguard simulate` on every usable lab run at one fleet size
(every strategy), predicts every (size, strategy) cell and compares the
model's median over SEEDS seeds with the lab's median over the cell's runs,
on peak connect rate, overflows and time to recover.

Statistics (docs/simulate.md, "Simulate against the lab"):
  - ratio = model median / lab median (overflows as (x+50)/(y+50), so that
    0 against 3 is not an infinite error); the target is 0.8-1.2;
  - the lab's spread per cell: its range, and s = the standard deviation of
    ln(x) over the runs (ln(x+50) for overflows);
  - the uncertainty of ln(ratio): the median of n runs has a standard error
    of about 1.2533 s/sqrt(n) (normal approximation), the lab's and the
    model's (over its seeds) add; h = 1.96 x that is the 95% half-width;
  - verdict per figure: "met" (within 0.8-1.2); "MISS" (outside, and
    |ln ratio| > h: the model disagrees beyond the noise); "noise" (outside,
    but within the noise: the lab's median is too uncertain to decide at
    20%). For every figure whose h exceeds ln 1.2 it prints how many lab
    runs would make the lab's median certain to +-20% (95%):
    n = (1.96 x 1.2533 x s / ln 1.2)^2;
  - the yardstick: each lab run against the median of its cell's other
    runs (leave one out), the same 0.8-1.2 test.

Usage: simulate_check.py OUT SG SCENARIO CAL_N HOLD PERIOD SEEDS SIZES...
Environment: LABDIR (lab JSON directory, default OUT; files *lab_<scenario>_<N>_r*.json),
STORMGUARD_FROM (glob: the stormguard rows come only from lab files whose
name matches it; the model runs this tree's dialer, so use the files made by
the same dialer code; default every file), HOST_CORES (cores Valkey and
the load generator shared in the lab; default this machine's), KILL_COST
(Valkey's CPU per client CLIENT KILL frees, the centre of the fit's
0.5-1.2x range; 16us, measured by INFO commandstats), HZ (CONFIG_HZ of the
lab's host, whose timer wheel batches TCP's retransmits; 250, as on the
lab's; -1: exact timeouts), ANSWER_COST (the client side's CPU per PING
written and per answer read; 5us, measured by bench/simulate_clientcost.sh),
OBSERVE_CPU (1: the lab's stormguard instances read INFO clients cpu stats
before the loss, as main's since fa4f4cf, and start at the server-told
rate: the model's stormguard rows, in the fit and the check, get
--observe-cpu; default 0, as the lab files made before), CMD_COST (Valkey's
CPU per command, measured: the fit keeps it instead of fitting it; unset:
fitted), CONN_COST (the same for Valkey's CPU per accepted connection),
REFUSED_DIAL_COST (the client side's CPU per dial a down server refuses,
measured; unset: 0.52 of the fitted dial cost), CAL_SCENARIO / CAL_LABDIR / CAL_STORMGUARD_FROM (the calibration
runs' scenario, directory and stormguard files, when not the checked
ones': calibrated on a kill, checked on restarts).

The model's figure for a cell is the median over max(SEEDS, runs) seeds
rounded up to a multiple of the lab runs: seed i counts its connects on
lab run (i mod runs)'s own 100 ms grid (simulate --bucket-phase; the
lab's buckets start with its recorder, and where t0 falls in them moves
the peak of a short burst). Every lab run's figure is printed with the
model's median over it ("runs (sim/run)"), next to the cell's median,
range and spread: the verdict compares medians and says so.
"""
import fnmatch
import glob
import json
import math
import os
import statistics as st
import subprocess
import sys

KEYS = ("peak_connects_per_sec", "listen_overflows", "time_to_recover_ms")
NAMES = ("peak", "ovf", "ttr")
Z, MEDIAN_SE = 1.96, 1.2533
LN20 = math.log(1.2)


def load_lab(labdir, scen, n, sg_from):
    rows = {}
    for f in sorted(glob.glob(f"{labdir}/*lab_{scen}_{n}_r*.json")):
        try:
            data = json.load(open(f))
        except (OSError, ValueError):
            continue
        for r in data if isinstance(data, list) else [data]:
            if r["strategy"] == "stormguard" and not fnmatch.fnmatch(os.path.basename(f), sg_from):
                continue
            r["_file"] = os.path.basename(f)
            rows.setdefault(r["strategy"], []).append(r)
    return rows


def phase_ms(r):
    """How long before t0 the lab run's 100 ms buckets start (its first
    timeline point's t_ms, modulo 100; 100 for 0): the model counts its
    connects on the same grid (simulate --bucket-phase). None without a
    timeline."""
    pts = r.get("timeline") or []
    if not pts:
        return None
    return ((-pts[0]["t_ms"]) % 100) or 100


def steady(r):
    # The fleet was steady before the kill: warmed up with about one dial
    # per client and every client connected when it was killed.
    n = r["clients"]
    return (r.get("warmup_connect_attempts") or 0) <= 1.05 * n and (r.get("killed_clients") or n) >= 0.99 * n


def usable(r):
    return r.get("time_to_recover_ms") and r.get("listen_overflows") is not None and steady(r)


def lnv(k, x):
    return math.log(x + 50) if k == "listen_overflows" else math.log(max(x, 1))


def ratio(k, a, b):
    if a is None:
        return float("inf")
    return (a + 50) / (b + 50) if k == "listen_overflows" else a / max(b, 1)


def sd_ln(k, xs):
    xs = [x for x in xs if x is not None]
    return st.stdev(lnv(k, x) for x in xs) if len(xs) >= 2 else float("nan")


def ok20(x):
    return 0.8 <= x <= 1.2


def runs_needed(s):
    if math.isnan(s):
        return None
    return max(1, math.ceil((Z * MEDIAN_SE * s / LN20) ** 2))


def main():
    out, sg, scen, cal_n, hold, period, seeds = sys.argv[1:8]
    seeds, sizes = int(seeds), sys.argv[8:]
    labdir = os.environ.get("LABDIR") or out
    sg_from = os.environ.get("STORMGUARD_FROM") or "*"
    cores = os.environ.get("HOST_CORES") or str(os.cpu_count() or 1)
    kill = os.environ.get("KILL_COST") or "16us"
    answer = os.environ.get("ANSWER_COST") or "5us"
    hz = os.environ.get("HZ") or "250"
    # The dialer's INFO cpu input: the fit's fleet settings hold it for
    # its stormguard observations (the command accepts the flag with the
    # stormguard strategy only; the fit sets each observation's strategy).
    obs_cpu = ["--observe-cpu"] if os.environ.get("OBSERVE_CPU") == "1" else []
    # Valkey's CPU per command, measured (bench/simulate_clientcost.sh:
    # 6.0-6.1 us per PING on the lab's pinned Valkey): the fit keeps it.
    cmd_cost = ["--cmd-cost", os.environ["CMD_COST"]] if os.environ.get("CMD_COST") else []
    # Valkey's CPU per accepted connection, measured (bench/simulate_clientcost.sh
    # ONLY=accepts: 7.3-8.0 us on the lab's pinned Valkey): the fit keeps it.
    cmd_cost += ["--conn-cost", os.environ["CONN_COST"]] if os.environ.get("CONN_COST") else []
    # The calibration's runs may be another scenario's (CAL_SCENARIO,
    # CAL_LABDIR): calibrated on a kill, checked on restarts.
    cal_scen = os.environ.get("CAL_SCENARIO") or scen
    cal_dir = os.environ.get("CAL_LABDIR") or labdir
    lab = {n: load_lab(labdir, scen, n, sg_from) for n in sizes}
    cal_lab = load_lab(cal_dir, cal_scen, cal_n, os.environ.get("CAL_STORMGUARD_FROM") or sg_from)
    cal = [r for runs in cal_lab.values() for r in runs if usable(r)]
    if not cal:
        sys.exit(f"no usable {cal_scen} lab run at {cal_n} clients to calibrate on")
    calfile = f"{out}/calibration_input.json"
    json.dump(cal, open(calfile, "w"))
    # The lab host's net.core.netdev_max_backlog (clients and Valkey on
    # one loopback): a timer tick's retransmits beyond it are dropped.
    backlog = os.environ.get("NETDEV_BACKLOG") or "1000"
    common = ["--scenario", scen, "--hold", hold, "--period", period, "--somaxconn", "128", "--hz", hz, "--netdev-backlog", backlog, "--json"]
    # The client side's CPU per dial a restarting server refuses, measured
    # (bench/simulate_clientcost.sh ONLY=dials: the lab client's net.Dialer,
    # 9.8-11.6 us): no kill has one to fit.
    if os.environ.get("REFUSED_DIAL_COST"):
        common += ["--refused-dial-cost", os.environ["REFUSED_DIAL_COST"]]
    cal_common = ["--scenario", cal_scen] + common[2:]
    fit = json.loads(subprocess.run([sg, "simulate", "--calibrate", calfile, "--host-cores", cores, "--kill-cost", kill, "--answer-cost", answer, "--clients", cal_n,
                                     "--strategy", "stormguard" if obs_cpu else "immediate"] + obs_cpu + cmd_cost + cal_common, capture_output=True, text=True, check=True).stdout)
    m = fit["model"]
    print(f"calibrated on {len(cal)} {cal_scen} lab runs at {cal_n} clients (every strategy): cycle_cost {m['cycle_cost_ns']/1000:.1f}us, conn_cost {m['conn_cost_ns']/1000:.1f}us,"
          f" cmd_cost {m['cmd_cost_ns']/1000:.1f}us, kill_cost {m['kill_cost_ns']/1000:.0f}us, notice_cost {m['notice_cost_ns']/1000:.0f}us, answer_cost {m['answer_cost_ns']/1000:.1f}us,"
          f" dial_cost {m['dial_cost_ns']/1000:.0f}us, client_burst {m['client_burst']:.2f}, client_share {m['client_share']:.1f},"
          f" host_cores {m['host_cores']}, client_cpu {m['client_cpu_ns']/1000:.0f}us, host_load {m['host_load']:.2f},"
          f" fit error {fit['calibration']['error']:.2f}")
    mflags = ["--cycle-cost", f"{m['cycle_cost_ns']}ns", "--conn-cost", f"{m['conn_cost_ns']}ns", "--cmd-cost", f"{m['cmd_cost_ns']}ns", "--client-dial-rate", str(m["client_dial_rate"]),
              "--kill-cost", f"{m['kill_cost_ns']}ns", "--notice-cost", f"{m['notice_cost_ns']}ns", "--answer-cost", f"{m['answer_cost_ns']}ns", "--dial-cost", f"{m['dial_cost_ns']}ns",
              "--client-burst", str(m["client_burst"]), "--client-share", str(m["client_share"]),
              "--host-cores", str(m["host_cores"]), "--client-cpu", f"{m['client_cpu_ns']}ns", "--host-load", str(m["host_load"])]
    print(f"model: median of >= {seeds} seeds (each on a lab run's bucket grid); lab: median of the cell's runs; ratio sim/lab (overflows (x+50)/(y+50));"
          " s: sd of ln(lab runs); h: 95% half-width of ln(ratio) from the lab's and the model's spread;"
          " verdict met / MISS (beyond the noise) / noise (undecided; n: lab runs for +-20%)")
    model, labself, verdicts = {}, {}, {}
    for n in sizes:
        for s, runs in sorted(lab[n].items()):
            ok = [r for r in runs if usable(r)]
            if len(ok) < len(runs):
                print(f"{n:>6} {s:<12} {len(runs) - len(ok)} run(s) left out: not steady before the kill or not recovered")
            if not ok:
                continue
            # The model's figure is the median over seeds; seed i counts
            # its connects on lab run (i mod runs)'s bucket grid, so every
            # run's grid is used (runs x ceil(SEEDS/runs) seeds).
            phases = [phase_ms(r) for r in ok]
            nsim = len(ok) * math.ceil(seeds / len(ok))
            sims = []
            for seed in range(1, nsim + 1):
                ph = phases[(seed - 1) % len(ok)]
                pf = ["--bucket-phase", f"{ph}ms"] if ph else []
                cmd = [sg, "simulate", "--clients", str(n), "--strategy", s, "--seed", str(seed)] + common + mflags + pf + (obs_cpu if s == "stormguard" else [])
                p = subprocess.run(cmd, capture_output=True, text=True)
                if p.returncode != 0:
                    sims = None
                    print(f"{n:>6} {s:<12} not simulated: {p.stderr.strip()[:200]}")
                    break
                sims.append(json.loads(p.stdout))
            if sims is None:
                continue
            is_cal = n == cal_n and cal_scen == scen
            tag = " (calibration size)" if is_cal else ""
            print(f"{n:>6} {s:<12} {len(ok)} lab runs{tag}")
            for i, k in enumerate(KEYS):
                labx = [r[k] for r in ok]
                simx = [x[k] for x in sims]
                med = st.median(labx)
                inf = float("inf")
                sm = st.median(inf if x is None else x for x in simx)
                sm = None if sm == inf else sm
                rt = ratio(k, sm, med)
                sl, ss = sd_ln(k, labx), sd_ln(k, simx)
                sl0 = 0 if math.isnan(sl) else sl
                ss0 = 0 if math.isnan(ss) else ss
                h = Z * MEDIAN_SE * math.sqrt(sl0 ** 2 / len(ok) + ss0 ** 2 / len(sims))
                if ok20(rt):
                    v = "met"
                elif len(ok) < 2:
                    v = "1run"  # the lab's noise is unknown
                elif rt != inf and abs(math.log(rt)) <= h:
                    v = "noise"
                else:
                    v = "MISS"
                need = runs_needed(sl)
                needs = f"n={need}" if need and Z * MEDIAN_SE * sl0 / math.sqrt(len(ok)) > LN20 else ""
                loo = []
                if len(ok) >= 2:
                    for j, r in enumerate(ok):
                        others = st.median(o[k] for jj, o in enumerate(ok) if jj != j)
                        loo.append(ok20(ratio(k, r[k], others)))
                if not is_cal:
                    t = model.setdefault((s, NAMES[i]), [0, 0])
                    t[0] += ok20(rt)
                    t[1] += 1
                    t = labself.setdefault((s, NAMES[i]), [0, 0])
                    t[0] += sum(loo)
                    t[1] += len(loo)
                    verdicts.setdefault((s, NAMES[i]), []).append(v)
                smin = min((x for x in simx if x is not None), default=None)
                smax = max((x for x in simx if x is not None), default=None)
                print(f"         {NAMES[i]:<4} lab {med:>8.0f} ({min(labx)}-{max(labx)}, s {sl:4.2f})"
                      f"  sim {('-' if sm is None else f'{sm:.0f}'):>7} ({smin}-{smax})"
                      f"  ratio {rt:5.2f}  h {h:4.2f}  l-o-o {sum(loo)}/{len(loo)}  {v if not is_cal else '':<5} {needs}")
                # Every lab run's own figure and the model's median
                # against it: the verdict compares medians, the runs show
                # what that median hides.
                per = "  ".join(f"{x}({ratio(k, sm, x):.2f})" for x in labx)
                print(f"              runs (sim/run): {per}")
            # Valkey's own CPU per client from the disruption on (INFO cpu:
            # the lab's server_cpu_percent over its window; the model's
            # main thread to the end of its run): not scored, a check on
            # the server's costs.
            labcpu = [r["server_cpu_percent"] / 100 * r["duration_ms"] / int(n) * 1000 for r in ok if r.get("server_cpu_percent") is not None]
            simcpu = [x["server_cpu_ms"] / int(n) * 1000 for x in sims if x.get("server_cpu_ms") is not None]
            if labcpu and simcpu:
                print(f"         cpu  lab {st.median(labcpu):8.1f} us/client (Valkey, INFO cpu)  sim {st.median(simcpu):7.1f}")
            # SYNs the model answered with a cookie (TcpExt SyncookiesSent;
            # not in the lab's JSON: docs/benchmarks.md 11d read the lab's
            # from its namespaces).
            cookies = [x.get("syncookies_sent") for x in sims if x.get("syncookies_sent") is not None]
            if cookies:
                print(f"         cookies sim {st.median(cookies):.0f} (SYNs answered with a cookie, median)")
    summary(model, labself, verdicts)


def tally(t, strat=None, name=None):
    a = b = 0
    for (s, k), (x, y) in t.items():
        if (strat is None or s == strat) and (name is None or k == name):
            a += x
            b += y
    return f"{a:>2} of {b:<3}" if b else "   -     "


def summary(model, labself, verdicts):
    strats = sorted({s for s, _ in model})
    print("within 0.8-1.2, out of sample: model (its median against the lab's median) | lab (a run against the median of its cell's other runs)")
    print(f"{'':12} {'peak':>21} {'overflows':>21} {'time to recover':>21} {'all':>21}")
    for s in strats + [None]:
        cols = [f"{tally(model, s, k)} | {tally(labself, s, k)}" for k in NAMES] + [f"{tally(model, s)} | {tally(labself, s)}"]
        print(f"{s or 'all':12} " + " ".join(f"{c:>21}" for c in cols))
    print("verdicts, out of sample (met / MISS beyond the noise / noise: undecided at the lab's n):")
    for s in strats + [None]:
        cols = []
        for k in NAMES + (None,):
            vs = [v for (ss, kk), l in verdicts.items() if (s is None or ss == s) and (k is None or kk == k) for v in l]
            cols.append(f"{vs.count('met')}/{vs.count('MISS')}/{vs.count('noise')}" + (f" ({vs.count('1run')} 1-run)" if '1run' in vs else ""))
        print(f"{s or 'all':12} " + " ".join(f"{c:>21}" for c in cols))


if __name__ == "__main__":
    main()
