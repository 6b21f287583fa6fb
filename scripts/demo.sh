#!/usr/bin/env bash
# make demo: start a throwaway valkey-server in a private network namespace
# with a tiny accept queue, freeze it, fire a connection burst, and show what
# stormguard sees. Everything is removed on exit. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces)" >&2; exit 2; }
ns="sg-demo-$$"
dir=$(mktemp -d)
cleanup() {
  [ -n "${vpid:-}" ] && kill -CONT "$vpid" 2>/dev/null; [ -n "${vpid:-}" ] && kill -9 "$vpid" 2>/dev/null
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" sysctl -qw net.core.somaxconn=32
ip netns exec "$ns" valkey-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$dir" --logfile "$dir/valkey.log" --maxclients 200 &
vpid=$!
for _ in $(seq 50); do ip netns exec "$ns" valkey-cli ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "== calm: Valkey in namespace $ns, somaxconn=32"
./bin/stormguard sample --netns "/var/run/netns/$ns" --valkey 127.0.0.1:6379 --count 2 --interval 500ms
echo
echo "== storm: Valkey frozen (SIGSTOP) while 200 clients connect"
kill -STOP "$vpid"
ip netns exec "$ns" timeout 4 valkey-benchmark -q -c 200 -n 200 -k 0 -t ping >/dev/null 2>&1 &
sleep 1
./bin/stormguard sample --netns "/var/run/netns/$ns" --valkey 127.0.0.1:6379 --count 4 --interval 500ms || true
kill -CONT "$vpid"
wait || true
echo
echo "Accept queue at its limit and ListenOverflows rising: that is a connection storm."
