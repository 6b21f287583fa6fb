#!/usr/bin/env bash
# Storm lab over client hosts (docs/benchmarks.md, "storm lab", sections 9
# and 10): what each run costs the client side and the server, measured
# over the hold (the fleet steady, before the disruption) from
# /proc/PID/stat of the storm process, valkey-server and the delay line's
# relay process.
#  rtt: --hosts 4 with and without --rtt 1ms (the user-space delay line
#       where the kernel has no netem), RTT_CLIENTS (3000) at --period 1s,
#       alternating, RTT_ROUNDS (2) rounds;
#  big: BIG_CLIENTS (15000) clients over --hosts 8 in one run, --period 3s.
# ONLY=rtt or ONLY=big runs one part. Needs root and valkey-server.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "stormhosts.sh: needs root (network namespaces)"; exit 0; }
command -v valkey-server >/dev/null || { echo "stormhosts.sh: needs valkey-server"; exit 0; }
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
go build -o "$OUT/stormguard" ./cmd/stormguard
SG="$OUT/stormguard"

# hold_cpu ARGS…: one storm run; prints PING round trips, goodput and the
# CPU of the storm process, valkey-server and the relay during the hold.
hold_cpu() {
	python3 - "$SG" "$@" <<'PY'
import json, os, subprocess, sys, time
sg, args = sys.argv[1], sys.argv[2:]
load = open('/proc/loadavg').read().split()[0]
p = subprocess.Popen([sg, 'storm', '--progress', '--json'] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
tck = os.sysconf('SC_CLK_TCK')
def cpu(pid):
    try:
        f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
        return (int(f[11]) + int(f[12])) / tck
    except OSError:
        return 0.0
def children(pid, name):
    out = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                st = open(f'/proc/{d}/stat').read()
            except OSError:
                continue
            if st.rsplit(')', 1)[1].split()[1] == str(pid) and name in st.split(')')[0]:
                out.append(int(d))
    return out
def snap(vk, rl):
    return time.time(), cpu(p.pid), sum(map(cpu, vk)), sum(map(cpu, rl))
a = b = None
for line in p.stderr:
    if 'holding' in line and a is None:
        vk, rl = children(p.pid, 'valkey'), children(p.pid, os.path.basename(sg))
        a = snap(vk, rl)
    if 'disrupted' in line and a is not None:
        b = snap(vk, rl)
        break
out, err = p.communicate()
if p.returncode != 0 or a is None or b is None:
    sys.exit(f"storm failed (exit {p.returncode}): {err.strip()[-300:]}")
j = json.loads(out)
dt = b[0] - a[0]
pct = lambda i: f"{100 * (b[i] - a[i]) / dt:.0f}%"
print(f"load {load} | {' '.join(args)} | rtt by {j['rtt_method']}: PING p50 {j['ping_rtt_p50_ms']} p99 {j['ping_rtt_p99_ms']} ms"
      f" | goodput before {j['goodput_before']:.0f}/s | hold {dt:.1f} s: storm process {pct(1)}, valkey-server {pct(2)},"
      f" relay {pct(3)} of one CPU | recovered {j['recovered']} in {j['time_to_recover_ms']} ms, overflows {j['listen_overflows']}")
PY
}

ONLY=${ONLY:-all}
if [ "$ONLY" = all ] || [ "$ONLY" = rtt ]; then
	clients=${RTT_CLIENTS:-3000}
	echo "== --hosts 4 with and without --rtt 1ms: $clients clients, --period 1s, ${RTT_ROUNDS:-2} rounds"
	for _ in $(seq "${RTT_ROUNDS:-2}"); do
		for rtt in "" "--rtt 1ms"; do
			# shellcheck disable=SC2086
			hold_cpu --spawn --hosts 4 $rtt --clients "$clients" --period 1s --strategy immediate \
				--scenario kill --hold 6s --duration 20s
		done
	done
fi
if [ "$ONLY" = all ] || [ "$ONLY" = big ]; then
	clients=${BIG_CLIENTS:-15000}
	echo "== $clients clients over --hosts 8, --period 3s, kill"
	hold_cpu --spawn --hosts 8 --clients "$clients" --period 3s --ramp 1000 --strategy immediate \
		--scenario kill --hold 10s --warmup-timeout 120s --duration 30s
fi
