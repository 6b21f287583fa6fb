#!/usr/bin/env python3
"""netns_timeline.py PREFIX [STEP_MS] [TMAX_S]: per-STEP changes of the namespace counters that
bench/netns_sampler.py wrote to PREFIX.samples, from each strategy's t0 (its "disrupted" progress line in
PREFIX.err), with the storm JSON's connects column (PREFIX.json) at 100 ms steps. Run by bench/blip_diag.sh."""
import json, sys, re
P = sys.argv[1]; B = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.1; TMAX = float(sys.argv[3]) if len(sys.argv) > 3 else 12
t0s = []
for l in open(P + ".err"):
    m = re.match(r"(\d+\.\d+) storm (\S+)/\S+: disrupted", l)
    if m: t0s.append((m.group(2), float(m.group(1))))
rows = [l.split() for l in open(P + ".samples")]
hdr = rows[0]; rows = rows[1:]
pids = []
for r in rows:
    if r[1] not in pids: pids.append(r[1])
try:
    js = {x["strategy"]: x for x in json.load(open(P + ".json"))}
except Exception:
    js = {}
cols = ["ListenOverflows", "TCPSynRetrans", "ActiveOpens", "PassiveOpens", "InSegs", "CurrEstab", "AttemptFails"]
ix = {c: hdr.index(c) for c in cols}
for (s, t0), pid in zip(t0s, pids):
    rs = [(float(r[0]), {c: int(r[ix[c]]) for c in cols}) for r in rows if r[1] == pid]
    x = js.get(s, {})
    tl = {round(b["t_ms"] / 100): b for b in x.get("timeline", [])}
    print(f"== {s} t0={t0:.3f} overflows={x.get('listen_overflows')} ttr={x.get('time_to_recover_ms')} rejected={x.get('rejected_connections')}")
    print("   t_s  ovf synrtx actopen pasopen  inseg  estab  afail | json: conn cfail ok fail")
    def at(t):
        best = None
        for tt, v in rs:
            if tt <= t: best = v
            else: break
        return best
    k = -2
    while k * B < TMAX:
        a, b = at(t0 + k * B), at(t0 + (k + 1) * B)
        if a and b:
            d = {c: b[c] - a[c] for c in cols}
            j = tl.get(round(k * B * 10)) if abs(B - 0.1) < 1e-9 else None
            js_ = f"{j['connects']:>5} {j['connect_failures']:>5} {j['ok_commands']:>5} {j['failed_commands']:>5}" if j else ""
            print(f"{k*B:6.2f} {d['ListenOverflows']:>4} {d['TCPSynRetrans']:>6} {d['ActiveOpens']:>7} {d['PassiveOpens']:>7} {d['InSegs']:>6} {b['CurrEstab']:>6} {d['AttemptFails']:>6} | {js_}")
        k += 1
