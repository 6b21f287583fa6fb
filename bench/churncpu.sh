#!/usr/bin/env bash
# CPU per connection of the churn generator and of valkey-benchmark -k 0,
# side by side (docs/benchmarks.md, storm lab, "Generator connection rate"):
# each tool against a fresh valkey-server in a fresh namespace, the tool
# under /usr/bin/time (user + sys), the server's CPU from /proc/PID/stat,
# connections from the tool (stormguard: warm-up + run) and from Valkey's
# total_connections_received. Run it under the bench lock:
#   flock /tmp/stormguard-bench.lock bash bench/churncpu.sh
# Knobs: CPU_CLIENTS (50) CPU_ROUNDS (2) OUT (bench/out; the stormguard
# binary is $OUT/stormguard, built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "churncpu.sh: needs root (network namespaces)"; exit 0; }
command -v valkey-server >/dev/null && command -v valkey-benchmark >/dev/null ||
	{ echo "churncpu.sh: needs valkey-server and valkey-benchmark"; exit 0; }
CLIENTS=${CPU_CLIENTS:-50}
ROUNDS=${CPU_ROUNDS:-2}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
SG="$OUT/stormguard"
[ -x "$SG" ] || go build -o "$SG" ./cmd/stormguard
PORT=6399
NS="sg-bench-cpu-$$"
VPID=
cleanup() {
	[ -n "$VPID" ] && kill "$VPID" 2>/dev/null && wait "$VPID" 2>/dev/null || true
	VPID=
	ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
tck=$(getconf CLK_TCK)
echo "== CPU per connection, $CLIENTS clients, $ROUNDS rounds; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
	for tool in valkey-benchmark stormguard; do
		ip netns add "$NS"
		ip -n "$NS" link set lo up
		ip netns exec "$NS" valkey-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no \
			--protected-mode no --maxclients 10000 --logfile "$OUT/cpu-valkey.log" &
		VPID=$!
		for _ in $(seq 50); do ip netns exec "$NS" valkey-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
		c0=$(awk '{print $14+$15}' "/proc/$VPID/stat")
		if [ "$tool" = valkey-benchmark ]; then
			/usr/bin/time -f "%U %S %e" -o "$OUT/cpu-time" ip netns exec "$NS" valkey-benchmark -p "$PORT" -k 0 \
				-c "$CLIENTS" -n 70000 -t ping_inline -q >/dev/null 2>&1
			conns=70000
		else
			/usr/bin/time -f "%U %S %e" -o "$OUT/cpu-time" "$SG" storm --target "127.0.0.1:$PORT" \
				--netns "/var/run/netns/$NS" --clients "$CLIENTS" --strategy immediate --scenario churn \
				--duration 5s --json >"$OUT/cpu-storm.json"
			conns=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["connect_attempts"]+r["warmup_connect_attempts"])' "$OUT/cpu-storm.json")
		fi
		c1=$(awk '{print $14+$15}' "/proc/$VPID/stat")
		recv=$(ip netns exec "$NS" valkey-cli -p "$PORT" info stats | sed -n 's/^total_connections_received:\([0-9]*\).*/\1/p')
		read -r u s e <"$OUT/cpu-time"
		python3 -c "
u, s, e, conns, c0, c1, recv, tck = $u, $s, $e, $conns, $c0, $c1, $recv, $tck
print(f'$round $tool conns={conns} server_accepted={recv} wall={e}s client_cpu={u+s:.2f}s ({(u+s)/conns*1000:.4f} ms/conn, user {u:.2f} sys {s:.2f}) server_cpu={(c1-c0)/tck:.2f}s ({(c1-c0)/tck/recv*1000:.4f} ms/conn)')"
		cleanup
	done
done
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg)"
