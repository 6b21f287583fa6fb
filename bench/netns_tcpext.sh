#!/usr/bin/env bash
# Reads TcpExt counters (SYN cookies, SYN queue and accept queue drops) of
# every storm namespace (/var/run/netns/sg-*) once a second while a lab
# run elsewhere uses them, read-only, and keeps each namespace's last
# reading: the storm's JSON has listen_overflows but not the cookies
# (docs/benchmarks.md 11d: whether the lab's storms send SYN cookies).
# The last reading of a namespace is its storm's total when the namespace
# outlived its storm by a second (check: its ListenOverflows equals the
# JSON's listen_overflows; the JSON's "target" names the namespace).
# Knobs: DURATION (seconds, 3600), OUT (bench/out/tcpext). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/tcpext}
DURATION=${DURATION:-3600}
mkdir -p "$OUT"
end=$(( $(date +%s) + DURATION ))
while [ "$(date +%s)" -lt "$end" ]; do
	for f in /var/run/netns/sg-*; do
		[ -e "$f" ] || continue
		n=$(basename "$f")
		v=$(nsenter --net="$f" cat /proc/net/netstat 2>/dev/null | awk '/^TcpExt:/ {
			if (!h) { for (i = 1; i <= NF; i++) k[i] = $i; h = 1; next }
			for (i = 1; i <= NF; i++) if (k[i] ~ /^(SyncookiesSent|SyncookiesRecv|SyncookiesFailed|TCPReqQFullDoCookies|TCPReqQFullDrop|ListenOverflows|ListenDrops)$/) printf "%s=%s ", k[i], $i }')
		[ -n "$v" ] && echo "$(date -u +%T) $v" >"$OUT/last_$n.txt.new" && mv "$OUT/last_$n.txt.new" "$OUT/last_$n.txt"
	done
	sleep 1
done
