#!/usr/bin/env bash
# The storm lab's client side on this machine (docs/simulate.md, "The
# client side's CPU"; docs/benchmarks.md 11c): a Go client's CPU per PING
# round trip on a held connection (the model's --answer-cost is half of
# it: one wake-up and syscall to write the PING, one to read the answer)
# and per raw connect() on loopback, accepted or dropped at a full accept
# queue. valkey-server on CPU 1, the client on CPU 0, as the lab curve's
# --server-cpus 1, in a namespace of its own; three runs of each. Needs
# root and valkey-server. LOCK=FILE: hold a bench lock while measuring.
# PING_SIZES ("2000": held connections of the PING runs; more sizes show
# how the client side's cost per job grows with the fleet), ONLY=ping:
# just the PING runs; ONLY=dials: the lab client's own dial (net.Dialer)
# accepted against refused (a restart's redials), a raw connect()
# refused, and a loopback handshake split at its final ACK; ONLY=synwave:
# a wave of SYN retransmits on one timer tick against the loopback
# backlog (softnet_stat drops); ONLY=synbatch: whether the kernel
# answers one tick's SYN retransmits as a batch (every SYN before any
# final ACK: all connects complete, 129 queued) or one handshake at a time
# (129 complete); ONLY=startgap: how long a starting
# valkey-server listens before its event loop runs; ONLY=accepts:
# valkey-server's CPU per accepted connection, per first PING and per
# client killed, on a server as it started (a restart) and again after
# CLIENT KILL freed that many clients (a kill's redials); ACCEPT_N
# (10000) connections, three fresh servers; ONLY=labdial: the lab's own
# dial (lab.NewDialer: socket factory, poller, 2 s timeout) from 2,000
# and 4,000 goroutines released together, refused, dropped at a full
# accept queue and accepted (docs/benchmarks.md 11i).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "simulate_clientcost.sh: needs root (network namespace)"; exit 0; }
command -v valkey-server >/dev/null || { echo "simulate_clientcost.sh: needs valkey-server"; exit 0; }
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
go build -o "$OUT/clientcost" ./bench/clientcost
PING_SIZES=${PING_SIZES:-2000}
NS=sg-clientcost-$$
PORT=7001
measure() {
	ip netns add "$NS"
	trap 'kill "$vp" 2>/dev/null; wait "$vp" 2>/dev/null; ip netns del "$NS" 2>/dev/null' EXIT
	ip netns exec "$NS" ip link set lo up
	ip netns exec "$NS" sysctl -qw net.core.somaxconn=4096
	taskset -c 1 ip netns exec "$NS" valkey-server --port "$PORT" --save '' --appendonly no --maxclients 20000 --logfile "$OUT/clientcost-valkey.log" &
	vp=$!
	for _ in $(seq 50); do ip netns exec "$NS" valkey-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
	echo "load before: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%T) UTC"
	for n in $PING_SIZES; do
		{ [ "${ONLY:-}" = synwave ] || [ "${ONLY:-}" = synbatch ] || [ "${ONLY:-}" = startgap ] || [ "${ONLY:-}" = accepts ] || [ "${ONLY:-}" = labdial ]; } && break
		for _ in 1 2 3; do ip netns exec "$NS" taskset -c 0 "$OUT/clientcost" ping "$PORT" "$n"; done
	done
	if [ "${ONLY:-}" = accepts ]; then
		ulimit -n "$(ulimit -Hn)" # the client (Go raises its own soft limit too)
		for i in 1 2 3; do
			taskset -c 1 ip netns exec "$NS" valkey-server --port $((PORT + 600 + i)) --bind 127.0.0.1 --save '' --appendonly no \
				--daemonize no --protected-mode no --maxclients 20000 --logfile "$OUT/clientcost-valkey3.log" &
			sp=$!
			for _ in $(seq 50); do ip netns exec "$NS" valkey-cli -p $((PORT + 600 + i)) ping >/dev/null 2>&1 && break; sleep 0.1; done
			ip netns exec "$NS" taskset -c 0 "$OUT/clientcost" accepts $((PORT + 600 + i)) "${ACCEPT_N:-10000}" || true
			kill "$sp"; wait "$sp" 2>/dev/null || true
		done
		echo "load after: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%T) UTC"
		return 0
	fi
	if [ "${ONLY:-}" = labdial ]; then
		for n in 2000 2000 2000 4000 4000; do
			ip netns exec "$NS" taskset -c 0 "$OUT/clientcost" labdial $((PORT + 800)) "$n"
			sleep 0.3
		done
		echo "load after: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%T) UTC"
		return 0
	fi
	if [ "${ONLY:-}" = synbatch ]; then
		for n in 300 500 800; do for r in 1 2; do
			ip netns exec "$NS" taskset -c 0 "$OUT/clientcost" synbatch $((PORT + 700 + n / 100 + 10 * r)) "$n"
		done; done
		echo "load after: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%T) UTC"
		return 0
	fi
	if [ "${ONLY:-}" != ping ] && [ "${ONLY:-}" != dials ] && [ "${ONLY:-}" != synwave ] && [ "${ONLY:-}" != startgap ]; then
		for _ in 1 2 3; do ip netns exec "$NS" taskset -c 0 "$OUT/clientcost" dialfull $((PORT + 1)) 2000; done
		for _ in 1 2 3; do ip netns exec "$NS" taskset -c 0 "$OUT/clientcost" dialok "$PORT" 400; sleep 0.3; done
	fi
	if [ "${ONLY:-}" = startgap ]; then
		# A restart: a prober dials the port 100 us apart while a second
		# valkey-server (the lab's flags, CPU 1) starts: from its first
		# connect (the kernel listens) to its PING's answer (the event
		# loop runs) the accept queue takes handshakes nobody accepts.
		for _ in 1 2 3 4 5; do
			ip netns exec "$NS" taskset -c 0 "$OUT/clientcost" startgap $((PORT + 500)) 5000 &
			pp=$!
			sleep 0.3
			taskset -c 1 ip netns exec "$NS" valkey-server --port $((PORT + 500)) --bind 127.0.0.1 --save '' --appendonly no \
				--daemonize no --protected-mode no --logfile "$OUT/clientcost-valkey2.log" &
			sp=$!
			wait "$pp" || true
			kill "$sp"; wait "$sp" 2>/dev/null || true
		done
		echo "load after: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%T) UTC"
		return 0
	fi
	if [ "${ONLY:-}" = synwave ]; then
		# n SYNs dropped at a full accept queue within a few ms retransmit
		# on one timer tick ~1 s later: softnet_stat's drops beyond the
		# loopback backlog (net.core.netdev_max_backlog).
		for n in 500 2000 3000; do ip netns exec "$NS" taskset -c 0 "$OUT/clientcost" synwave $((PORT + 400 + n / 100)) "$n"; done
		echo "load after: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%T) UTC"
		return 0
	fi
	if [ "${ONLY:-}" = dials ]; then
		# The lab client's own dial (net.Dialer) accepted and refused,
		# a raw connect() refused, and a loopback handshake split at its
		# final ACK (TCP_DEFER_ACCEPT).
		for _ in 1 2 3; do ip netns exec "$NS" taskset -c 0 "$OUT/clientcost" godial "$PORT" 2000; sleep 0.3; done
		for _ in 1 2 3; do ip netns exec "$NS" taskset -c 0 "$OUT/clientcost" dialrefused $((PORT + 2000)) 2000; done
		for _ in 1 2 3; do ip netns exec "$NS" taskset -c 0 "$OUT/clientcost" handshake $((PORT + 3000)) 2000; sleep 0.3; done
	fi
	echo "load after: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%T) UTC"
}
if [ -n "${LOCK:-}" ]; then
	export -f measure; export NS PORT OUT PING_SIZES ONLY ACCEPT_N
	flock "$LOCK" bash -c measure
else
	measure
fi
