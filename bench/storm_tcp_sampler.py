#!/usr/bin/env python3
"""TCP counters of a storm's namespace every few ms (docs/benchmarks.md 11g).
Run by bench/simulate_exit.sh.

storm_tcp_sampler.py STORMPID OUT: waits for the namespace of the storm
process STORMPID (/var/run/netns/sg-STORMPID-*), enters it and writes one
line per sample to OUT until the storm exits (at most 10 min): the time,
softnet_stat's drops and time squeezes per CPU (the host's: the loopback
backlog), and the namespace's Tcp/TcpExt counters that tell where a
connect went (ListenOverflows, TCPSynRetrans, OutRsts, AttemptFails,
ActiveOpens, PassiveOpens, SyncookiesSent, RetransSegs, TCPTimeouts).

storm_tcp_sampler.py --deltas OUT [STEP]: prints the counters' changes
per STEP seconds (0.02) from the first sample, only the steps where a
drop, an overflow, a SYN retransmit or a refused connect happened.
"""
import ctypes
import glob
import os
import re
import sys
import time

CLONE_NEWNET = 0x40000000
WANT = ["TcpExt:ListenOverflows", "TcpExt:TCPSynRetrans", "Tcp:OutRsts", "Tcp:AttemptFails", "Tcp:ActiveOpens",
        "Tcp:PassiveOpens", "TcpExt:SyncookiesSent", "Tcp:RetransSegs", "TcpExt:TCPTimeouts"]


def counters():
    r = {}
    for fn in ("snmp", "netstat"):
        lines = open(f"/proc/thread-self/net/{fn}").read().split("\n")
        for i in range(0, len(lines) - 1, 2):
            k, v = lines[i].split(), lines[i + 1].split()
            if k:
                for a, b in zip(k[1:], v[1:]):
                    r[k[0] + a] = int(b)
    return r


def sample(spid, out):
    f = open(out, "w")
    end = time.time() + 600
    entered = False
    while time.time() < end and os.path.exists(f"/proc/{spid}"):
        if not entered:
            ns = glob.glob(f"/var/run/netns/sg-{spid}-*")
            if not ns:
                time.sleep(0.05)
                continue
            fd = os.open(ns[0], os.O_RDONLY)
            if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                sys.exit(f"setns {ns[0]}: errno {ctypes.get_errno()}")
            entered = True
        rows = [l.split() for l in open("/proc/net/softnet_stat")]
        c = counters()
        f.write(f"{time.time():.4f} drop={[int(r[1], 16) for r in rows]} squeeze={[int(r[2], 16) for r in rows]} "
                + " ".join(f"{k.split(':')[1]}={c.get(k)}" for k in WANT) + "\n")
        f.flush()
        time.sleep(0.005)


def deltas(out, step):
    rows = []
    for l in open(out):
        t = float(l.split()[0])
        drop = [int(x) for x in re.search(r"drop=\[([^\]]*)\]", l).group(1).split(",")]
        c = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)(?=\s|$)", l)}
        rows.append((t, drop, c))
    if not rows:
        return
    prev, base = rows[0], rows[0][0]
    for r in rows[1:]:
        if r[0] - prev[0] < step and r is not rows[-1]:
            continue
        dd = [a - b for a, b in zip(r[1], prev[1])]
        dc = {k: v - prev[2].get(k, 0) for k, v in r[2].items() if v != prev[2].get(k, 0)}
        if any(dd) or any(k in dc for k in ("ListenOverflows", "TCPSynRetrans", "AttemptFails")):
            print(f"{r[0] - base:8.3f} backlog_drops+{dd} " + " ".join(f"{k}+{v}" for k, v in dc.items()))
        prev = r


if __name__ == "__main__":
    if sys.argv[1] == "--deltas":
        deltas(sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.02)
    else:
        sample(sys.argv[1], sys.argv[2])
