#!/usr/bin/env bash
# connectcost.sh: the server's CPU per admitted connection (the dialer's
# ConnectCost, docs/backoff.md "The server-told starting rate"), measured
# from Valkey's own INFO counters on a valkey-server pinned to one CPU
# (CPU 1; the client on CPU 0). Three loads, each N requests by C clients:
#   conn:  valkey-benchmark -k 0 (a new connection per PING: accept, client
#          creation, the PING, the client's close and the free)
#   cmd:   the same with keep-alive (the PING alone)
#   kill:  K idle connections, then CLIENT KILL TYPE normal (the teardown)
# Printed per load: Δ main-thread CPU (used_cpu_{sys,user}_main_thread) and
# Δ eventloop_duration_sum over Δ total_connections_received (conn, kill) or
# Δ total_commands_processed (cmd), in µs. Run it under the bench lock:
#   flock /tmp/stormguard-bench.lock bash bench/connectcost.sh
# Env: N (200000), C (50), K (10000), PORT (16479), TLS=1 to measure over TLS
# (needs valkey-server built with TLS; certificates made in a temp dir).
set -euo pipefail
N=${N:-200000}; C=${C:-50}; K=${K:-10000}; PORT=${PORT:-16479}
dir=$(mktemp -d /tmp/connectcost.XXXXXX)
trap 'valkey-cli -p "$PORT" $CLI_TLS shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
SRV_TLS=""; CLI_TLS=""
if [[ "${TLS:-0}" == 1 ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/k.pem" -out "$dir/c.pem" -days 1 -subj /CN=localhost >/dev/null 2>&1
  SRV_TLS="--tls-port $PORT --port 0 --tls-cert-file $dir/c.pem --tls-key-file $dir/k.pem --tls-ca-cert-file $dir/c.pem --tls-auth-clients no"
  CLI_TLS="--tls --cacert $dir/c.pem"
  PORTARGS=""
else
  PORTARGS="--port $PORT"
fi
# shellcheck disable=SC2086
taskset -c 1 valkey-server $PORTARGS $SRV_TLS --bind 127.0.0.1 --save '' --appendonly no \
  --maxclients 20000 --dir "$dir" --daemonize yes --logfile "$dir/v.log" --pidfile "$dir/v.pid"
for _ in $(seq 50); do valkey-cli -p "$PORT" $CLI_TLS ping >/dev/null 2>&1 && break; sleep 0.1; done
info() { valkey-cli -p "$PORT" $CLI_TLS info everything | tr -d '\r' | awk -F: '
  /^used_cpu_sys_main_thread:/{s=$2} /^used_cpu_user_main_thread:/{u=$2}
  /^eventloop_duration_sum:/{e=$2} /^total_connections_received:/{c=$2}
  /^total_commands_processed:/{p=$2} END{printf "%.6f %d %d %d\n", s+u, e, c, p}'; }
report() { # name before after unit(conn|cmd)
  read -r c0 e0 n0 p0 <<<"$2"; read -r c1 e1 n1 p1 <<<"$3"
  local d=$((n1 - n0)); [[ "$4" == cmd ]] && d=$((p1 - p0))
  awk -v name="$1" -v dc="$(awk -v a="$c0" -v b="$c1" 'BEGIN{print b-a}')" -v de=$((e1 - e0)) -v d="$d" -v unit="$4" \
    'BEGIN{printf "%-5s %8d %ss: cpu %.2f µs each, eventloop %.2f µs each (cpu %.3f s)\n", name, d, unit, dc*1e6/d, de/d, dc}'
}
a=$(info); taskset -c 0 valkey-benchmark -p "$PORT" $CLI_TLS -k 0 -t ping_mbulk -n "$N" -c "$C" -q >/dev/null; b=$(info)
report conn "$a" "$b" conn
a=$(info); taskset -c 0 valkey-benchmark -p "$PORT" $CLI_TLS -k 1 -t ping_mbulk -n "$N" -c "$C" -q >/dev/null; b=$(info)
report cmd "$a" "$b" cmd
# K idle connections, then the kill's teardown.
taskset -c 0 valkey-benchmark -p "$PORT" $CLI_TLS -k 1 -t ping_mbulk -n "$((K * 1000))" -c "$K" -q >/dev/null 2>&1 &
bpid=$!
for _ in $(seq 300); do
  n=$(valkey-cli -p "$PORT" $CLI_TLS info clients | tr -d '\r' | awk -F: '/^connected_clients:/{print $2}')
  (( n > K )) && break; sleep 0.1
done
a=$(info); valkey-cli -p "$PORT" $CLI_TLS client kill type normal >/dev/null; b=$(info)
kill "$bpid" 2>/dev/null || true; wait "$bpid" 2>/dev/null || true
read -r c0 e0 _ _ <<<"$a"; read -r c1 e1 _ _ <<<"$b"
awk -v dc="$(awk -v a="$c0" -v b="$c1" 'BEGIN{print b-a}')" -v de=$((e1 - e0)) -v k="$K" \
  'BEGIN{printf "kill  %8d clients: cpu %.2f µs each, eventloop %.2f µs each (killed about K; the two INFO calls and the benchmark'"'"'s PINGs included)\n", k, dc*1e6/k, de/k}'
uptime
