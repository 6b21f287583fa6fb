#!/usr/bin/env bash
# Runs every benchmark script in bench/ (make bench). Each script prints its
# own results; record them in docs/benchmarks.md with the command used.
set -euo pipefail
cd "$(dirname "$0")"
status=0
for script in ./*.sh; do
	[ "$(basename "$script")" = run.sh ] && continue
	echo "### $script"
	"$script" || { echo "FAILED: $script"; status=1; }
done
exit $status
