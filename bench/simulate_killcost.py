#!/usr/bin/env python3
"""What a kill looks like from both ends (docs/benchmarks.md, section 11b).

Opens N idle connections (one PING each) to a Valkey at 127.0.0.1:PORT,
sends CLIENT KILL TYPE normal SKIPME yes over another connection and then
either does nothing ("passive": the clients do not react) or redials every
killed client at once from one thread ("reactive": non-blocking connect,
PING when connected), recording per 20 ms what the client side handled:
closes noticed, connects made, connects finished, answers read. Prints
Valkey's own time for the command (INFO commandstats, cmdstat_client|kill,
after CONFIG RESETSTAT at the start), when the client side saw the kill's
reply, and the ListenOverflows of the namespace it runs in.

Run it inside a network namespace you created, against a server there:
  ip netns add NS; ip netns exec NS ip link set lo up
  ip netns exec NS sysctl -w net.core.somaxconn=128
  ip netns exec NS valkey-server --port PORT --bind 127.0.0.1 --save '' --appendonly no --maxclients 20000 --daemonize yes
  ulimit -n 40000; ip netns exec NS python3 bench/simulate_killcost.py N passive|reactive PORT
Every loop is bounded: N connections, 4 s after the kill.
"""
import collections
import select
import socket
import sys
import time


def netstat(key):
    lines = open("/proc/net/netstat").read().split("\n")
    h, v = lines[0].split(), lines[1].split()
    return int(v[h.index(key)])


def command(addr, cmd):
    """One command's reply: a status line, or a bulk string read whole."""
    s = socket.create_connection(addr)
    s.sendall(cmd)
    out = b""
    while b"\r\n" not in out:
        out += s.recv(65536)
    if out.startswith(b"$"):
        head, _, out = out.partition(b"\r\n")
        while len(out) < int(head[1:]) + 2:
            out += s.recv(65536)
    s.close()
    return out.decode()


def main():
    n, mode, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    addr = ("127.0.0.1", port)
    command(addr, b"CONFIG RESETSTAT\r\n")
    socks = []
    for _ in range(n):
        s = socket.create_connection(addr)
        s.sendall(b"PING\r\n")
        assert s.recv(100).startswith(b"+PONG")
        s.setblocking(False)
        socks.append(s)
    adm = socket.create_connection(addr)
    ep = select.epoll()
    state = {}
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
        state[s.fileno()] = ("up", s)
    ev = []
    o0 = netstat("ListenOverflows")
    t0 = time.monotonic()
    adm.sendall(b"CLIENT KILL TYPE normal SKIPME yes\r\n")
    adm.setblocking(False)
    ep.register(adm.fileno(), select.EPOLLIN)
    back = noticed = 0
    while time.monotonic() < t0 + 4 and back < n and not (mode == "passive" and noticed >= n):
        for fd, _ in ep.poll(0.05):
            now = time.monotonic() - t0
            if fd == adm.fileno():
                adm.recv(100)
                ev.append((now, "killreply"))
                ep.unregister(fd)
                continue
            st, s = state[fd]
            if st == "up":
                try:
                    d = s.recv(100)
                except OSError:
                    d = b""
                if d:
                    continue
                noticed += 1
                ev.append((now, "notice"))
                ep.unregister(fd)
                s.close()
                del state[fd]
                if mode == "passive":
                    continue
                ns = socket.socket()
                ns.setblocking(False)
                try:
                    ns.connect(addr)
                except BlockingIOError:
                    pass
                ev.append((now, "dial"))
                state[ns.fileno()] = ("conn", ns)
                ep.register(ns.fileno(), select.EPOLLOUT)
            elif st == "conn":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    ev.append((now, "connfail"))
                    ep.unregister(fd)
                    s.close()
                    del state[fd]
                    continue
                ev.append((now, "connected"))
                s.send(b"PING\r\n")
                state[fd] = ("ping", s)
                ep.modify(fd, select.EPOLLIN)
            elif st == "ping":
                d = s.recv(100)
                ep.unregister(fd)
                if d.startswith(b"+PONG"):
                    ev.append((now, "answer"))
                    back += 1
                    state[fd] = ("back", s)
                else:
                    s.close()
                    del state[fd]
    overflows = netstat("ListenOverflows") - o0
    kill = [l for l in command(addr, b"INFO commandstats\r\n").split("\r\n") if "client|kill" in l]
    print(f"N={n} {mode}: valkey {kill[0] if kill else '?'}; overflows {overflows}; back {back}")
    buckets = collections.defaultdict(collections.Counter)
    for t, k in ev:
        buckets[int(t / 0.02)][k] += 1
    for b in sorted(buckets):
        c = buckets[b]
        print(f"  {b * 20:5d} ms " + " ".join(f"{k}={c[k]}" for k in ("notice", "dial", "connected", "answer", "killreply", "connfail") if c[k]))
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
