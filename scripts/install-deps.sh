#!/usr/bin/env bash
# Installs what stormguard's tests, demo and benchmarks need on a fresh
# Debian (bookworm) machine. Idempotent: does nothing when all is present.
set -euo pipefail

need=()
command -v valkey-server >/dev/null || need+=(valkey-server)
command -v valkey-benchmark >/dev/null || need+=(valkey-tools)
command -v ip >/dev/null || need+=(iproute2)
command -v ss >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v conntrack >/dev/null || need+=(conntrack)
# Legacy iptables (iptables-legacy, iptables-legacy-save): the defuse safety
# matrix tests notrack under a legacy stateful filter.
command -v iptables-legacy-save >/dev/null || need+=(iptables)
command -v ethtool >/dev/null || need+=(ethtool)
command -v promtool >/dev/null || need+=(prometheus)
# cgo (make build-glide, the valkey-glide storm strategy's tests) needs a C
# compiler and the C library headers.
command -v gcc >/dev/null || need+=(gcc libc6-dev)
# The lab's redis-py strategy runs Debian's python3-redis (redis-py 4.3).
/usr/bin/python3 -c 'import redis' 2>/dev/null || need+=(python3-redis)
# Headless browser for the dashboard test (internal/serve TestIntegrationDashboard).
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
# `make generate` only (./scripts/install-deps.sh generate): clang and the
# libbpf headers rebuild the committed BPF objects; builds and tests never
# need them.
if [ "${1:-}" = generate ]; then
  need=()
  command -v clang >/dev/null || need+=(clang llvm)
  [ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
  [ -f /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${need[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# valkey-server and valkey-tools come from bookworm-backports.
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/stormguard-backports.list
fi
apt-get update -qq
backports=() ; others=()
for p in "${need[@]}"; do
  case "$p" in valkey-*) backports+=("$p") ;; *) others+=("$p") ;; esac
done
if [ ${#backports[@]} -gt 0 ]; then
  apt-get install -y -qq -t bookworm-backports "${backports[@]}" >/dev/null
fi
if [ ${#others[@]} -gt 0 ]; then
  apt-get install -y -qq $(printf '%s\n' "${others[@]}" | sort -u) >/dev/null
fi
# The Debian package may start a system valkey-server on 6379; the tests use
# their own namespaces and do not need it.
echo "install-deps: installed ${need[*]}"
