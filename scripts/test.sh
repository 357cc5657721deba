#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (virtualenvs, redis-server, Airflow),
# then lint, types, tests (unit, integration, real Airflow) and the benchmarks in short mode.
# Exits non-zero on any failure, including "no tests collected".
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
started=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

step "bootstrap: virtualenv, redis-server, Airflow virtualenv"
venv="$("$repo/scripts/dev-venv.sh" dev | tail -n 1)"
"$repo/scripts/ensure-redis.sh"
MWAA_LOGGING_AIRFLOW_VENV="$("$repo/scripts/airflow-venv.sh" | tail -n 1)"
export MWAA_LOGGING_AIRFLOW_VENV
export PATH="$venv/bin:$PATH"

step "ruff"
ruff check mwaa_logging tests benchmarks
step "mypy (strict)"
mypy

step "pytest"
set +e
python -m pytest tests -q -p no:cacheprovider "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
[[ $status -eq 0 ]] || exit "$status"

step "benchmarks (short mode)"
if [[ -x scripts/bench.sh ]]; then
    scripts/bench.sh
fi
step "all green"
