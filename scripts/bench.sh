#!/usr/bin/env bash
# Run the benchmark suite and print its ratio table.
#   scripts/bench.sh            short mode (what CI runs, ~5 min on 2 cores)
#   scripts/bench.sh full       full sizes (more rounds, 8 and 32 processes, learning an unknown quota)
# Extra arguments go to pytest, e.g. scripts/bench.sh short -k delivery
# JSON results: artifacts/benchmarks.json (pytest-benchmark format; ratios in each "extra_info").
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-${MWAA_LOGGING_BENCH:-short}}"
[ $# -gt 0 ] && shift
python="${PYTHON:-.venv/bin/python}"
mkdir -p artifacts
status=0
MWAA_LOGGING_BENCH="$mode" "$python" -m pytest benchmarks/ -p no:cacheprovider -p no:logging -p no:xdist \
    --benchmark-json=artifacts/benchmarks.json --benchmark-columns=median,rounds \
    --benchmark-sort=name -q "$@" || status=$?
if [ -s artifacts/benchmarks.json ]; then
    echo
    echo "mwaa-logging benchmarks ($mode mode), ratios measured in one run:"
    "$python" benchmarks/_report.py artifacts/benchmarks.json
fi
exit "$status"
