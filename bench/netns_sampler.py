#!/usr/bin/env python3
"""netns_sampler.py STORMPID OUT: every ~5 ms, the TCP counters of each valkey-server child of the
storm process STORMPID (read through /proc/PID/net, i.e. in its namespace: with --spawn the clients dial
inside it too, so their SYN retransmits count there), stamped with the wall time, until STORMPID exits.
Run by bench/blip_diag.sh; bench/netns_timeline.py reads its output."""
import os, sys, time, subprocess
storm, out = int(sys.argv[1]), sys.argv[2]
keys = {"TcpExt": ["ListenOverflows", "ListenDrops", "TCPSynRetrans", "TCPTimeouts", "TCPAbortOnTimeout"],
        "Tcp": ["ActiveOpens", "PassiveOpens", "AttemptFails", "InSegs", "OutSegs", "RetransSegs", "EstabResets", "CurrEstab"]}
def parse(txt, want):
    r = {}
    lines = txt.splitlines()
    for i in range(0, len(lines) - 1, 2):
        h, v = lines[i].split(), lines[i + 1].split()
        if h[0][:-1] in want:
            for k, x in zip(h[1:], v[1:]):
                if k in want[h[0][:-1]]:
                    r[k] = x
    return r
def kids():
    try:
        return [int(p) for p in subprocess.run(["pgrep", "-P", str(storm), "-x", "valkey-server"], capture_output=True, text=True).stdout.split()]
    except Exception:
        return []
f = open(out, "w")
cols = keys["TcpExt"] + keys["Tcp"]
f.write("t pid " + " ".join(cols) + "\n")
pids, lastk = [], 0
start = time.time()
while time.time() - start < 900:  # a lab storm of the curve takes ~2-4 min
    now = time.time()
    if now - lastk > 0.2:
        try:
            os.kill(storm, 0)
        except ProcessLookupError:
            break
        pids, lastk = kids(), now
    for p in pids:
        try:
            a = open(f"/proc/{p}/net/netstat").read(); b = open(f"/proc/{p}/net/snmp").read()
        except OSError:
            continue
        r = parse(a, {"TcpExt": keys["TcpExt"]}); r.update(parse(b, {"Tcp": keys["Tcp"]}))
        f.write(f"{now:.4f} {p} " + " ".join(r.get(k, "-") for k in cols) + "\n")
    time.sleep(0.005)
f.close()
