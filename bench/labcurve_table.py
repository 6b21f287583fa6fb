#!/usr/bin/env python3
"""The lab curve's tables (docs/benchmarks.md section 8) from bench/labcurve.sh's JSON files.

Usage: labcurve_table.py FILE.json...   (files named lab_<scenario>_<clients>[_i<instances>]_r<round>.json, each with
its .json.err whose first line is "HH:MM:SS start load L1 L5 L15 cmd: ...", as bench/labcurve.sh writes;
when the command's binary is named sg_<name> (a commit, or a what-if variant such as sg_ar15k) and the
files are of more than one binary, the round column names it; runs of `--compare immediate,stormguard`
show "–" for full-jitter, and "the fastest" is then of the two; runs on a busy host (bench/labcurve.sh
BUSY=K: the .err's last line "HH:MM:SS end load L1 L5 L15 busy K spinners got C CPU-s in W s") show the
load at the end and the spinners' CPU seconds, and are cells of their own; where the .err has its
lines "valkey-server I of N: ran R s, waited W s on the run queue", the stormguard run's are shown too,
a restart's two servers summed)

Prints two markdown tables:
  1. one row per run: overflows / ms to recover 99% per strategy (stormguard also its peak connects/s
     in one 100 ms bucket scaled to a second), immediate's overflows / stormguard's (target >= 10),
     stormguard's recovery / the fastest of the three (target <= 1.5), when the fleets noticed the
     loss (kill only: ms after t0 until 99% of the clients had a failed command), Valkey's CPU (% of
     one CPU from the baseline to the end of the stormguard run: how much of the host the server got),
     warm-up dials / clients (the most of the three) and goodput in the second before t0 / PING rate
     (each strategy's fleet: immediate, full-jitter, stormguard; the stormguard fleet's INFO reads
     count too): 1.00 / 1.00 is a steady fleet, and a run with warm-up above 1.05 or any goodput
     below 0.90 is marked unsteady;
  2. one row per cell (scenario, clients; and binary, when the runs are of more than one): the runs' min-max of each figure and how many runs met
     each target and both, all runs and the steady ones.
Nothing is typed in by hand: every figure comes from the JSON.
"""

import json
import math
import os
import re
import sys
from collections import defaultdict

STRATS = ("immediate", "full-jitter", "stormguard")
PERIOD_S = 3.0  # --period of the curve: the PING rate is clients / period
OVERFLOW_TARGET = 10.0
RECOVERY_TARGET = 1.5
# a fleet was steady before the disruption when warm-up took at most 5% extra dials and every fleet's
# goodput in the second before it was at least 90% of its PING rate (judgement: 8c's steady runs had
# 1.00-1.01 and 0.99-1.25, its one unsteady run 1.08 and 0.58)
STEADY_WARMUP = 1.05
STEADY_GOODPUT = 0.90


def num(x):
    return f"{x:,}"


def ratio(a, b):
    return math.inf if b == 0 else a / b


def fmt_ratio(x, nd=2):
    return "∞" if math.isinf(x) else f"{x:.{nd}f}"


def notice_ms(res):
    """ms after t0 until 99% of the clients had a failed command (their loss noticed); None if never."""
    need = 0.99 * res["clients"]
    total = 0
    # the whole timeline (it starts ~1 s before t0, when a steady fleet has no failures): a restart's
    # clients lose their connections at the SIGKILL, before t0 (the old server's exit)
    for b in res.get("timeline") or []:
        total += b["failed_commands"]
        if total >= need:
            return b["t_ms"] + 100
    return None


def load_run(path):
    base = os.path.basename(path)
    m = re.match(r"lab_(\w+?)_(\d+)(?:_i(\d+))?_r(\d+)\.json$", base)
    if not m:
        raise SystemExit(f"{path}: name is not lab_<scenario>_<clients>[_i<instances>]_r<round>.json")
    with open(path) as f:
        rows = json.load(f)
    with open(path + ".err") as f:
        lines = f.read().splitlines()
    line = lines[0] if lines else ""
    first = line.split()
    busy = None
    sched = []  # per valkey-server (one per strategy, in the run's order): seconds its main thread ran, waited
    for ln in lines[1:]:
        v = re.match(r"valkey-server \d+ of \d+: ran (\S+) s, waited (\S+) s on the run queue", ln)
        if v:
            sched.append((float(v.group(1)), float(v.group(2))))
        b = re.match(r"\S+ end load (\S+) \S+ \S+ busy (\d+) spinners got (\S+) CPU-s in (\d+) s", ln)
        if b:
            busy = {"end_load": float(b.group(1)), "k": int(b.group(2)), "cpu": float(b.group(3)), "wall": int(b.group(4))}
    # the binary's commit, when it is named sg_<commit> as bench/labcurve.sh's runs here were
    binary = re.search(r"sg_([0-9A-Za-z._-]+) storm", line)
    scenario = m.group(1)
    if scenario == "killcpu1":  # docs/lab.md's pinned probe: the kill scenario with --server-cpus 1
        scenario = "kill"
    by = {r["strategy"]: r for r in rows}
    missing = [s for s in ("immediate", "stormguard") if s not in by]
    if missing:
        raise SystemExit(f"{path}: no result for {missing}")
    present = [s for s in STRATS if s in by]
    run = {"scenario": scenario, "binary": binary.group(1) if binary else "", "clients": int(m.group(2)), "round": int(m.group(4)),
           "instances": int(m.group(3)) if m.group(3) else 0,
           "start": first[0][:5], "load": float(first[3]), "busy": busy, "sched": sched, "order": [r["strategy"] for r in rows], "by": by}
    fastest = min(by[s]["time_to_recover_ms"] for s in present)
    sg, im = by["stormguard"], by["immediate"]
    run["ovf_ratio"] = ratio(im["listen_overflows"], sg["listen_overflows"])
    run["rec_ratio"] = sg["time_to_recover_ms"] / fastest
    run["recovered"] = all(by[s].get("recovered", True) for s in present)
    run["met_ovf"] = run["ovf_ratio"] >= OVERFLOW_TARGET
    run["met_rec"] = run["rec_ratio"] <= RECOVERY_TARGET and sg.get("recovered", True)
    rate = run["clients"] / PERIOD_S
    run["warmup"] = max(by[s]["warmup_connect_attempts"] for s in present) / run["clients"]
    run["goodput_by"] = {s: (by[s]["goodput_before"] or 0) / rate for s in present}
    run["goodput"] = min(run["goodput_by"].values())
    run["steady"] = run["warmup"] <= STEADY_WARMUP and run["goodput"] >= STEADY_GOODPUT
    # only a kill's failures are the losses themselves (a restart's and a blip's include failed redials)
    run["notice"] = {s: notice_ms(by[s]) if run["scenario"].startswith("kill") else None for s in present}
    return run


def cell(r, s):
    if s not in r["by"]:
        return "–"
    x = r["by"][s]
    t = num(x["time_to_recover_ms"]) if x.get("recovered", True) else "not recovered"
    return f'{num(x["listen_overflows"])} / {t}'


def load_text(r):
    """the load at the start; on a busy host also at the end and the spinners' CPU seconds of K x wall;
    when the .err has the servers' schedstat lines, the seconds the stormguard run's Valkey main thread
    ran and waited on the run queue"""
    t = f'{r["load"]:.1f}'
    b = r["busy"]
    if b:
        t += f' → {b["end_load"]:.1f} (busy {b["k"]}: {b["cpu"]:.0f} of {b["k"] * b["wall"]} CPU-s)'
    k = len(r["sched"]) // len(r["order"]) if len(r["sched"]) % len(r["order"]) == 0 else 0
    if k:
        # one server per strategy; a restart's two (the killed one, then the restarted one): summed
        i = r["order"].index("stormguard") * k
        ran, waited = (sum(x) for x in zip(*r["sched"][i:i + k]))
        t += f'; sg Valkey ran {ran:.1f} s, waited {waited:.1f} s'
    return t


def run_table(runs):
    # name the binary per row only when the runs are of more than one
    show_binary = len({r["binary"] for r in runs}) > 1
    print("| scenario | clients | round | start (UTC), load | immediate | full-jitter | stormguard (peak/s) "
          "| overflows ÷ | recovery ÷ fastest | noticed 99% (imm / sg, ms) | Valkey CPU % (sg) | warm-up / goodput (imm, fj, sg) | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        sg = r["by"]["stormguard"]
        fast = " (fastest)" if r["rec_ratio"] == 1.0 else ""
        nt = " / ".join("–" if r["notice"][s] is None else num(r["notice"][s]) for s in ("immediate", "stormguard"))
        gp = ", ".join(f'{r["goodput_by"][s]:.2f}' if s in r["goodput_by"] else "–" for s in STRATS)
        verdict = "met" if r["met_ovf"] and r["met_rec"] else "**not met** (" + ", ".join(
            w for w, ok in (("overflows", r["met_ovf"]), ("recovery", r["met_rec"])) if not ok) + ")"
        rnd = f'{r["round"]} ({r["binary"]})' if show_binary else str(r["round"])
        sc = r["scenario"] + (f' in {r["instances"]} instances' if r["instances"] else "")
        print(f'| {sc} | {num(r["clients"])} | {rnd} | {r["start"]}, {load_text(r)} '
              f'| {cell(r, "immediate")} | {cell(r, "full-jitter")} '
              f'| {cell(r, "stormguard")} / {num(sg["peak_connects_per_sec"])} '
              f'| {fmt_ratio(r["ovf_ratio"], 1)} | {fmt_ratio(r["rec_ratio"])}{fast} | {nt} | {sg["server_cpu_percent"]:.0f} '
              f'| {r["warmup"]:.2f} / {gp}{"" if r["steady"] else " unsteady"} | {verdict} |')


def span(vals, f=num):
    lo, hi = f(min(vals)), f(max(vals))
    return lo if lo == hi else f"{lo}–{hi}"


def cell_table(runs):
    # runs of different binaries (what-if variants, or commits) are cells of their own
    show_binary = len({r["binary"] for r in runs}) > 1
    cells = defaultdict(list)
    for r in runs:
        sc = f'{r["scenario"]} ({r["binary"]})' if show_binary else r["scenario"]
        if r["busy"]:
            sc += f' busy {r["busy"]["k"]}'
        if r["instances"]:
            sc += f' in {r["instances"]} instances'
        cells[(sc, r["clients"])].append(r)
    print("| scenario | clients | runs | load | immediate overflows / ms | full-jitter overflows / ms "
          "| stormguard overflows / ms | overflows ÷ | recovery ÷ fastest | met: overflows / recovery / both | steady runs: met both |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (sc, n), rs in cells.items():
        def om(s):
            if any(s not in r["by"] for r in rs):
                return "–"
            return (span([r["by"][s]["listen_overflows"] for r in rs]) + " / "
                    + span([r["by"][s]["time_to_recover_ms"] for r in rs]))
        k = len(rs)
        st = [r for r in rs if r["steady"]]
        both = sum(r["met_ovf"] and r["met_rec"] for r in rs)
        load = span([r["load"] for r in rs], lambda x: f"{x:.1f}")
        if all(r["busy"] for r in rs):
            load += " → " + span([r["busy"]["end_load"] for r in rs], lambda x: f"{x:.1f}")
        print(f'| {sc} | {num(n)} | {k} | {load} '
              f'| {om("immediate")} | {om("full-jitter")} | {om("stormguard")} '
              f'| {span([r["ovf_ratio"] for r in rs], lambda x: fmt_ratio(x, 1))} '
              f'| {span([r["rec_ratio"] for r in rs], fmt_ratio)} '
              f'| {sum(r["met_ovf"] for r in rs)} / {sum(r["met_rec"] for r in rs)} / **{both} of {k}** '
              f'| {sum(r["met_ovf"] and r["met_rec"] for r in st)} of {len(st)} |')


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    runs = [load_run(p) for p in sys.argv[1:]]
    runs.sort(key=lambda r: (r["scenario"] != "kill", r["scenario"], r["clients"], r["start"]))
    run_table(runs)
    print()
    cell_table(runs)


if __name__ == "__main__":
    main()
