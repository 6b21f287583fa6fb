#!/usr/bin/env bash
# Storm lab benchmarks (docs/benchmarks.md, "storm lab"):
#  1. generator connection rate vs valkey-benchmark -k 0, same spawned
#     server, same number of parallel clients, alternating runs;
#  2. 2,000 clients, kill, somaxconn 128: every strategy (valkey-glide too
#     when cgo can build it: make build-glide).
#  4. a TLS kill storm with --setup auth over --hosts 4 --rtt 1ms,
#     --server-cpus 1 (TLS_CLIENTS 2000, TLS_HOSTS 4, TLS_RTT 1ms, TLS_RUNS 3,
#     TLS_STRATEGIES, --period 1s; TLS_PY=1 adds redis-py).
#   ONLY=tls: just part 4
# Needs root, valkey-server and valkey-benchmark. Knobs (environment):
#   STORM_CLIENTS (2000) STORM_SOMAXCONN (128) RATE_CLIENTS (50)
#   RATE_REQUESTS (70000, ~5 s) RATE_DURATION (5s) RATE_ROUNDS (4) STORM_STRATEGIES (all) OUT (bench/out)
#   RATE_LOCK (a file: each round of part 1 holds flock on it, released
#   between rounds, e.g. /tmp/stormguard-bench.lock on a shared machine)
#   ONLY=rate: just part 1
#  5. the metastable TLS storm (docs/lab.md "A metastable storm"):
#     META_CLIENTS (1000) TLS clients over META_HOSTS (8) hosts, 250 ms
#     connect+handshake timeout, immediate redial, PING every 100 ms,
#     CLIENT KILL of all, 60 s watched; without stormguard, with the
#     stormguard dialer, and with `--defuse auto` (META_RUNS 1; META_WARMUP
#     90s, enough for 4,000 clients arriving at 200/s on a busy machine).
#   ONLY=meta: just part 5
#  6. cluster failover over TLS, two client hosts, --setup auth: go-redis's
#     ClusterClient and valkey-go, 20 clients in 4 instances, 90 s watched
#     (go-redis reloads its topology only after a minute; CLUSTER_RUNS 1).
#   ONLY=cluster: just part 6
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "storm.sh: needs root (network namespaces)"; exit 0; }
command -v valkey-server >/dev/null && command -v valkey-benchmark >/dev/null ||
	{ echo "storm.sh: needs valkey-server and valkey-benchmark"; exit 0; }

STORM_CLIENTS=${STORM_CLIENTS:-2000}
STORM_SOMAXCONN=${STORM_SOMAXCONN:-128}
RATE_CLIENTS=${RATE_CLIENTS:-50}
RATE_REQUESTS=${RATE_REQUESTS:-70000}
RATE_DURATION=${RATE_DURATION:-5s}
RATE_ROUNDS=${RATE_ROUNDS:-4}
STORM_STRATEGIES=${STORM_STRATEGIES:-all}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
# The full comparison includes the real valkey-glide client when cgo can
# build it (make build-glide); otherwise --compare all says so and runs the
# rest.
GLIDE=,valkey-glide
if ! CGO_ENABLED=1 go build -tags glide -o "$OUT/stormguard" ./cmd/stormguard; then
	echo "storm.sh: no cgo build (gcc?): valkey-glide left out"
	go build -o "$OUT/stormguard" ./cmd/stormguard
	GLIDE=
fi
SG="$OUT/stormguard"

# 5. The metastable TLS storm: the same fleet and trigger three ways.
metastable() {
	local clients=${META_CLIENTS:-1000} hosts=${META_HOSTS:-8} runs=${META_RUNS:-1}
	local common=(--spawn --tls --hosts "$hosts" --clients "$clients" --connect-timeout 250ms
		--warmup-connect-timeout 5s --warmup-timeout "${META_WARMUP:-90s}" --period 100ms --ramp 200
		--scenario kill --duration 60s --json)
	echo
	echo "== metastable TLS storm: $clients clients over --hosts $hosts, 250ms connect timeout, kill, 60 s, $runs run(s); load: $(cut -d' ' -f1-3 /proc/loadavg)"
	for run in $(seq "$runs"); do
		"$SG" storm "${common[@]}" --strategy immediate >"$OUT/meta-immediate-$run.json"
		"$SG" storm "${common[@]}" --strategy stormguard >"$OUT/meta-stormguard-$run.json"
		"$SG" storm "${common[@]}" --strategy immediate --defuse auto >"$OUT/meta-defuse-$run.json"
	done
	python3 - "$OUT" "$runs" <<'PY'
import json, sys
out, runs = sys.argv[1], int(sys.argv[2])
print("| run | fleet | goodput before /s | min % | end % | back to 80% (ms after kill) | recovered (ms) | failed dials | overflows | server CPU % | agent |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for i in range(1, runs + 1):
    for name in ("immediate", "stormguard", "defuse"):
        r = json.load(open(f"{out}/meta-{name}-{i}.json"))
        pct = lambda v: "-" if v is None else f"{100 * v:.0f}"
        ag = []
        for e in r.get("agent_events") or []:
            ev = e["event"]
            if ev.get("type") not in ("state", "defuse"):
                continue
            what = ev.get("to") if ev.get("type") == "state" else f"{ev.get('action')} {ev.get('mitigation', {}).get('action', '')} {ev.get('mitigation', {}).get('rate', '')}"
            ag.append(f"{e['t_ms'] / 1000:+.1f}s {what}")
        fleet = {"immediate": "immediate", "stormguard": "stormguard dialer", "defuse": "immediate + watch --defuse auto"}[name]
        print(f"| {i} | {fleet} | {r['goodput_before'] or 0:.0f} | {pct(r['goodput_min_ratio'])} | {pct(r['goodput_end_ratio'])} | "
              f"{r.get('goodput_back_ms') if r.get('goodput_back_ms') is not None else '-'} | {r['time_to_recover_ms'] or '-'} | "
              f"{r['connect_failures']} | {r['listen_overflows']} | {r['server_cpu_percent'] or 0:.0f} | {'; '.join(ag) or '-'} |")
PY
}
# 6. Cluster failover with TLS (cluster bus too), hosts and ACL auth.
cluster_failover() {
	local runs=${CLUSTER_RUNS:-1}
	echo
	echo "== cluster failover: --tls --hosts 2 --setup auth, 20 clients, 90 s, $runs run(s); load: $(cut -d' ' -f1-3 /proc/loadavg)"
	for run in $(seq "$runs"); do
		for s in valkey-go go-redis; do
			"$SG" storm --spawn --tls --hosts 2 --setup auth --cluster --scenario failover --strategy "$s" \
				--clients 20 --instances 4 --hold 300ms --duration 90s --json >"$OUT/cluster-$s-$run.json"
		done
	done
	python3 - "$OUT" "$runs" <<'PY'
import json, sys
out, runs = sys.argv[1], int(sys.argv[2])
print("| run | client | promote_ms | recovered | time_to_recover_ms | recovered clients | connect_attempts |")
print("|---|---|---|---|---|---|---|")
for i in range(1, runs + 1):
    for s in ("valkey-go", "go-redis"):
        r = json.load(open(f"{out}/cluster-{s}-{i}.json"))
        print(f"| {i} | {s} | {r.get('promote_ms')} | {r['recovered']} | {r.get('time_to_recover_ms')} | "
              f"{r['recovered_clients']}/{r['clients']} | {r['connect_attempts']} |")
PY
}

[ "${ONLY:-}" = meta ] && { metastable; exit 0; }
[ "${ONLY:-}" = cluster ] && { cluster_failover; exit 0; }
[ "${ONLY:-}" = tls ] || {

# 1. Generator rate. Each measurement gets a fresh namespace and a fresh
# server with the same configuration: the client side's TIME_WAIT sockets
# (tens of thousands after a few seconds) would otherwise carry over into
# the next measurement's ephemeral-port search and decide the result.
NS="sg-bench-storm-$$"
PORT=6399
cleanup() {
	[ -n "${VPID:-}" ] && kill "$VPID" 2>/dev/null && wait "$VPID" 2>/dev/null || true
	VPID=
	ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
fresh() {
	cleanup
	ip netns add "$NS"
	ip -n "$NS" link set lo up
	ip netns exec "$NS" valkey-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no \
		--protected-mode no --maxclients 10000 --logfile "$OUT/rate-valkey.log" 9>&- &
	VPID=$!
	for _ in $(seq 50); do ip netns exec "$NS" valkey-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
}
# Each runs in a command substitution (a subshell): it cleans up itself.
vbrate() {
	fresh
	ip netns exec "$NS" valkey-benchmark -p "$PORT" -k 0 -c "$RATE_CLIENTS" -n "$RATE_REQUESTS" -t ping_inline -q 2>/dev/null |
		tr '\r' '\n' | sed -n 's/^PING_INLINE: \([0-9.]*\) requests per second.*/\1/p' | tail -1
	cleanup
}
sgrate() {
	fresh
	"$SG" storm --target "127.0.0.1:$PORT" --netns "/var/run/netns/$NS" --clients "$RATE_CLIENTS" \
		--strategy immediate --scenario churn --duration "$RATE_DURATION" "$@" --json |
		python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["connects_per_sec"])'
	cleanup
}

echo "== generator rate: $RATE_CLIENTS parallel clients, a connection per PING: valkey-benchmark -k 0 -n $RATE_REQUESTS"
echo "   vs stormguard storm --scenario churn --duration $RATE_DURATION, default (a source address per client, as a"
echo "   fleet) and --source-addrs 1 (one address, as valkey-benchmark); a fresh namespace and server for each"
printf '%-6s %-18s %-18s %-7s %-18s %-7s %s\n' round valkey-benchmark/s stormguard/s ratio one-source/s ratio "load(1m) before after, end UTC"
for r in $(seq "$RATE_ROUNDS"); do
	[ -z "${RATE_LOCK:-}" ] || { exec 9>>"$RATE_LOCK"; flock 9; }
	load=$(cut -d' ' -f1 /proc/loadavg)
	if [ $((r % 2)) = 1 ]; then
		vb=$(vbrate); sg=$(sgrate); one=$(sgrate --source-addrs 1)
	else
		one=$(sgrate --source-addrs 1); sg=$(sgrate); vb=$(vbrate)
	fi
	[ -z "${RATE_LOCK:-}" ] || exec 9>&-
	printf '%-6s %-18s %-18s %-7s %-18s %-7s %s\n' "$r" "$vb" "$sg" "$(python3 -c "print('%.2f' % ($sg / $vb))")" \
		"$one" "$(python3 -c "print('%.2f' % ($one / $vb))")" "$load $(cut -d' ' -f1 /proc/loadavg) $(date -u +%T)"
done
cleanup
[ "${ONLY:-}" = rate ] && exit 0

# 2. The storm: every strategy, a fresh server each.
echo
echo "== storm: $STORM_CLIENTS clients, kill, somaxconn $STORM_SOMAXCONN, strategies: $STORM_STRATEGIES"
"$SG" storm --spawn --somaxconn "$STORM_SOMAXCONN" --clients "$STORM_CLIENTS" --scenario kill \
	--compare "$STORM_STRATEGIES" --json >"$OUT/storm-kill.json"
python3 - "$OUT/storm-kill.json" <<'PY'
import json, sys
rs = json.load(open(sys.argv[1]))
cols = ["strategy", "connect_attempts", "connect_failures", "peak_connects_per_sec", "time_to_recover_ms",
        "recover_p50_ms", "failed_commands", "listen_overflows", "rejected_connections"]
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for r in rs:
    print("| " + " | ".join("-" if r.get(c) is None else str(r[c]) for c in cols) + " |")
by = {r["strategy"]: r for r in rs}
if "immediate" in by and "stormguard" in by:
    im, sg = by["immediate"], by["stormguard"]
    ttrs = [r["time_to_recover_ms"] for r in rs if r["time_to_recover_ms"] is not None]
    ov = (im["listen_overflows"] or 0) / max(sg["listen_overflows"] or 0, 1)
    print(f"\nimmediate/stormguard listen overflows: {ov:.1f}x (target >= 10x); "
          f"stormguard recovery {sg['time_to_recover_ms']} ms vs fastest {min(ttrs) if ttrs else None} ms (target <= 2x)")
PY

# 3. The same storm with the clients grouped into application instances
# that share one dialer / client each (--instances).
INSTANCES=${STORM_INSTANCES:-20}
echo
echo "== storm: $STORM_CLIENTS clients in $INSTANCES instances, kill, somaxconn $STORM_SOMAXCONN"
"$SG" storm --spawn --somaxconn "$STORM_SOMAXCONN" --clients "$STORM_CLIENTS" --instances "$INSTANCES" \
	--scenario kill --compare "immediate,stormguard,go-redis,valkey-go$GLIDE" \
	--json >"$OUT/storm-kill-instances.json"
python3 - "$OUT/storm-kill-instances.json" <<'PY'
import json, sys
rs = json.load(open(sys.argv[1]))
cols = ["strategy", "instances", "connect_attempts", "connect_failures", "peak_connects_per_sec", "time_to_recover_ms",
        "recover_p50_ms", "failed_commands", "listen_overflows"]
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for r in rs:
    print("| " + " | ".join("-" if r.get(c) is None else str(r[c]) for c in cols) + " |")
PY

} # parts 1-3

# 4. A TLS kill storm with per-connection AUTH over client hosts (the
# realistic lab: RSA 2048 handshakes on Valkey's main thread, HELLO 3 AUTH +
# CLIENT SETNAME on every reconnect, clients on their own hosts and CPU).
TLS_CLIENTS=${TLS_CLIENTS:-2000}
TLS_HOSTS=${TLS_HOSTS:-4}
TLS_RUNS=${TLS_RUNS:-3}
TLS_RTT=${TLS_RTT:-1ms}
TLS_STRATEGIES=${TLS_STRATEGIES:-immediate,full-jitter,stormguard,go-redis,valkey-go}
echo
echo "== TLS storm: $TLS_CLIENTS clients over --hosts $TLS_HOSTS --rtt $TLS_RTT, --setup auth, kill, --server-cpus 1, $TLS_RUNS runs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
tls_common=(--spawn --tls --setup auth --hosts "$TLS_HOSTS" --rtt "$TLS_RTT" --server-cpus 1 --clients "$TLS_CLIENTS"
	--ramp 250 --period 1s --scenario kill --duration 30s --warmup-timeout 3m --json)
# One command per strategy (a failed one, e.g. a warm-up that does not
# finish, loses only its own result), order rotated by run. --period 1s:
# at 100 ms the fleet's 20,000 TLS PINGs/s overload the 2 shared cores
# before the storm starts (docs/benchmarks.md, storm lab section 6).
IFS=, read -r -a tls_strats <<<"$TLS_STRATEGIES"
for run in $(seq "$TLS_RUNS"); do
	n=${#tls_strats[@]}
	for i in $(seq 0 $((n - 1))); do
		s=${tls_strats[$(((i + run - 1) % n))]}
		"$SG" storm "${tls_common[@]}" --strategy "$s" >"$OUT/storm-tls-$run-$s.json" || echo "storm.sh: $s run $run failed"
	done
	# redis-py opens each TLS connection with a fresh SSLContext that
	# loads the default trust store; the lab makes that the run's CA only
	# (docs/lab.md, TLS), without which its 2,000 clients did not come up
	# on one client CPU. TLS_PY=1 adds it.
	if [ "${TLS_PY:-0}" = 1 ]; then
		"$SG" storm "${tls_common[@]}" --strategy redis-py --warmup-timeout 5m >"$OUT/storm-tls-$run-redis-py.json" ||
			echo "storm.sh: redis-py run $run failed"
	fi
done
python3 - "$OUT" "$TLS_RUNS" <<'PY'
import glob, json, sys, statistics
out, runs = sys.argv[1], int(sys.argv[2])
by = {}
for i in range(1, runs + 1):
    for f in sorted(glob.glob(f"{out}/storm-tls-{i}-*.json")):
        try:
            r = json.load(open(f))
        except ValueError:
            continue  # a run that failed: its error is on stderr
        by.setdefault(r["strategy"], []).append(r)
def span(rs, k, scale=1):
    v = [r[k] * scale for r in rs if r.get(k) is not None]
    return "-" if not v else f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})"
print("| strategy | recovered | time_to_recover_ms | goodput_min % | goodput_back_ms | listen_overflows | connect_attempts | connect_failures | server_cpu % | ping_rtt_p50_ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for s, rs in by.items():
    rec = sum(1 for r in rs if r["recovered"])
    print(f"| {s} | {rec}/{len(rs)} | {span(rs, 'time_to_recover_ms')} | {span(rs, 'goodput_min_ratio', 100)} | "
          f"{span(rs, 'goodput_back_ms')} | {span(rs, 'listen_overflows')} | {span(rs, 'connect_attempts')} | "
          f"{span(rs, 'connect_failures')} | {span(rs, 'server_cpu_percent')} | {span(rs, 'ping_rtt_p50_ms')} |")
print("median (min-max) over the runs")
PY

[ "${ONLY:-}" = tls ] && exit 0
metastable
cluster_failover
