#!/usr/bin/env bash
# make demo: a throwaway valkey-server in a private network namespace with a
# tiny accept queue, watched by `stormguard watch`; a connection storm is
# fired at it (valkey-benchmark -k 0, with Valkey briefly frozen so the
# accept queue overflows) and the agent's events, verdict, state API and a
# postmortem report are shown. Non-interactive, ~30-40 s. Everything but the
# report is removed on exit. Needs root (network namespaces).
#
#   DEMO_HTTP=127.0.0.1:9877   agent HTTP address (the first free of 9877-9886 by default)
#   DEMO_REPORT=FILE           where the report goes (default /tmp/stormguard-demo-report.html)
#   DEMO_HOLD=SECONDS          keep everything running this long at the end (dashboard)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces)" >&2; exit 2; }
for c in ip valkey-server valkey-cli valkey-benchmark curl; do
	command -v "$c" >/dev/null || { echo "demo: needs $c (make deps)" >&2; exit 2; }
done
bin=./bin/stormguard
[ -x "$bin" ] || go build -o "$bin" ./cmd/stormguard

ns="sg-demo-$$"
nspath="/var/run/netns/$ns"
dir=$(mktemp -d /tmp/stormguard-demo.XXXXXX)
report=${DEMO_REPORT:-/tmp/stormguard-demo-report.html}
vpid="" apid="" bpid=""
cleanup() {
	set +e
	[ -n "$bpid" ] && kill "$bpid" 2>/dev/null
	[ -n "$vpid" ] && kill -CONT "$vpid" 2>/dev/null
	if [ -n "$apid" ] && kill -TERM "$apid" 2>/dev/null; then
		for _ in $(seq 50); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$apid" 2>/dev/null
	fi
	[ -n "$vpid" ] && kill -KILL "$vpid" 2>/dev/null
	ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
	ip netns del "$ns" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

http=${DEMO_HTTP:-}
if [ -z "$http" ]; then
	for p in $(seq 9877 9886); do
		if ! ss -Hltn "sport = :$p" | grep -q .; then http="127.0.0.1:$p"; break; fi
	done
	[ -n "$http" ] || { echo "demo: ports 9877-9886 are all taken; set DEMO_HTTP" >&2; exit 2; }
fi

# pretty prints JSON lines (events) as "time from → to: verdict"; raw
# without python3.
show_events() {
	if command -v python3 >/dev/null; then
		python3 -c '
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("type") == "state":
        print("  %s  %-10s -> %-10s %s" % (e["time"][11:23], e["from"], e["to"], e["reason"]))
        print("      " + e["verdict"])
    else:
        print("  %s  %s %s %s" % (e.get("time", "")[11:23], e.get("type"), e.get("action", ""), e.get("reason", "")))
' "$1"
	else
		cat "$1"
	fi
}
show_state() {
	if command -v python3 >/dev/null; then
		python3 -c '
import json, sys
for t in json.load(sys.stdin)["targets"]:
    s = t.get("sample") or {}
    l = s.get("listen") or {}
    print("  target %s  state %s (code %s) since %s" % (t["target"], t["state"], t["state_code"], t["since"][11:23]))
    print("  verdict: %s" % (t.get("verdict") or "-"))
    if s.get("errors"): print("  errors: %s" % s["errors"])
    print("  accept queue %s/%s (peak %s), listen_overflows %s, connected_clients %s" % (
        l.get("depth"), l.get("limit"), l.get("depth_max"),
        (s.get("tcp") or {}).get("listen_overflows"), (s.get("valkey") or {}).get("connected_clients")))
'
	else
		head -c 1500; echo
	fi
}

echo "== setup: Valkey in network namespace $ns, somaxconn=64 (accept queue of 64)"
ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" sysctl -qw net.core.somaxconn=64
ip netns exec "$ns" valkey-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no \
	--dir "$dir" --logfile "$dir/valkey.log" --maxclients 1000 &
vpid=$!
disown "$vpid"
for _ in $(seq 50); do ip netns exec "$ns" valkey-cli ping >/dev/null 2>&1 && break; sleep 0.1; done

echo "== stormguard watch --valkey 127.0.0.1:6379 --netns $nspath --events … --journal … --http $http"
"$bin" watch --valkey 127.0.0.1:6379 --netns "$nspath" --events "$dir/events.jsonl" \
	--journal "$dir/journal" --http "$http" 2>"$dir/agent.log" &
apid=$!
disown "$apid"
for _ in $(seq 100); do
	curl -fsS "http://$http/api/v1/state" 2>/dev/null | grep -q '"state":"calm"' && break
	kill -0 "$apid" 2>/dev/null || { echo "demo: the agent exited:" >&2; cat "$dir/agent.log" >&2; exit 1; }
	sleep 0.1
done
echo "   dashboard (while the demo runs): http://$http/"
sleep 3
echo
echo "== calm"
curl -fsS "http://$http/api/v1/state" | show_state

echo
echo "== storm: 200 clients reconnecting for every request (valkey-benchmark -k 0); Valkey frozen for 2 s"
ip netns exec "$ns" timeout 12 valkey-benchmark -h 127.0.0.1 -p 6379 -c 200 -n 10000000 -k 0 -t ping -q >/dev/null 2>&1 &
bpid=$!
sleep 1.5
kill -STOP "$vpid"
sleep 2
kill -CONT "$vpid"
sleep 1.5
kill "$bpid" 2>/dev/null || true
wait "$bpid" 2>/dev/null || true
bpid=""
for _ in $(seq 100); do grep -q '"to":"storm"' "$dir/events.jsonl" 2>/dev/null && break; sleep 0.1; done
curl -fsS "http://$http/api/v1/state" | show_state

echo
echo "== waiting for the storm to ease (5 s without drops)"
for _ in $(seq 150); do grep -q '"to":"recovering"' "$dir/events.jsonl" 2>/dev/null && break; sleep 0.1; done

echo
echo "== state events (--events $dir/events.jsonl, one JSON object per line)"
show_events "$dir/events.jsonl"

echo
echo "== the agent's view: GET http://$http/api/v1/state"
curl -fsS "http://$http/api/v1/state" | show_state

echo
echo "== stormguard report --journal $dir/journal --out $report"
"$bin" report --journal "$dir/journal" --out "$report"

echo
if [ -n "${DEMO_HOLD:-}" ]; then
	echo "== holding for ${DEMO_HOLD}s: dashboard at http://$http/ , or: $bin top --agent http://$http"
	sleep "$DEMO_HOLD"
fi
cat <<EOF
Where to look next:
  - the postmortem (kept): $report
  - live: while 'stormguard watch' runs, the dashboard is http://$http/ and
    '$bin top --agent http://$http' is the terminal view (rerun with DEMO_HOLD=60 to try both)
  - your own servers: $bin watch --events /var/log/stormguard/events.jsonl --journal /var/lib/stormguard
The namespace, Valkey, the agent and its files are removed now.
EOF
