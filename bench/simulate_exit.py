#!/usr/bin/env python3
"""A killed valkey-server's exit, timed (docs/simulate.md, `restart`;
docs/benchmarks.md 11g). Run by bench/simulate_exit.sh.

simulate_exit.py NS PORT N: start valkey-server (the lab's flags) pinned to
CPU 1 in network namespace NS, hold N connections to it from this process
(pinned to CPU 0), one PING answered on each, then SIGKILL the server and
time, from the kill: the first and the last EOF the client sees (the exit
closes the sockets one after another), the process reaped, and whether a
probe SYN sent every ~1 ms meanwhile is refused (the listener closed)
before the last EOF. Prints one line. Needs root; every wait is bounded.
"""
import ctypes
import os
import select
import signal
import socket
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000


def main():
    ns, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        sys.exit(f"setns {ns}: errno {ctypes.get_errno()}")
    os.sched_setaffinity(0, {0})
    log = os.environ.get("VALKEY_LOG", "/dev/null")
    p = subprocess.Popen(["taskset", "-c", "1", "valkey-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--protected-mode", "no", "--maxclients", "20000", "--logfile", log])
    try:
        run(p, port, n)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def run(p, port, n):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"PING\r\n")
        if not s.recv(16).startswith(b"+PONG"):
            sys.exit("no PONG")
        socks.append(s)
    ep = select.epoll(n + 10)
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
    time.sleep(0.5)
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGKILL)
    seen, first, last, probes, refused = 0, None, None, [], None
    while seen < n and time.monotonic() - t0 < 10:
        if refused is None:
            pr = socket.socket()
            pr.setblocking(False)
            try:
                pr.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            except ConnectionRefusedError:
                refused = time.monotonic()
            probes.append(pr)
            if refused is None:
                time.sleep(0.0005)
                if pr.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 111:  # ECONNREFUSED
                    refused = time.monotonic()
        for f, _ in ep.poll(0 if refused is None else 0.5, 4096):
            ep.unregister(f)
            seen += 1
            now = time.monotonic()
            first, last = first or now, now
    p.wait(10)
    reaped = time.monotonic()
    ms = lambda t: -1 if t is None else 1e3 * (t - t0)
    per = 1e6 * (last - first) / max(seen - 1, 1) if seen > 1 else float("nan")
    print(f"n={n} eofs={seen} first_eof={ms(first):.1f}ms last_eof={ms(last):.1f}ms reaped={ms(reaped):.1f}ms "
          f"per_conn={per:.2f}us probe_refused={ms(refused):.1f}ms (-1: not before the last EOF) probes={len(probes)}")
    for s in socks + probes:
        s.close()


if __name__ == "__main__":
    main()
