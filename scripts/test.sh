#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (virtualenvs, redis-server, valgrind, Airflow),
# then lint, types, tests (unit, integration, real Airflow) and the benchmarks in short mode.
# Exits non-zero on any failure, including "no tests collected".
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
started=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

step "bootstrap: virtualenv, redis-server and valgrind, Airflow virtualenv"
venv="$("$repo/scripts/dev-venv.sh" dev | tail -n 1)"
"$repo/scripts/ensure-debian-tools.sh"
MWAA_LOGGING_AIRFLOW_VENV="$("$repo/scripts/airflow-venv.sh" | tail -n 1)"
export MWAA_LOGGING_AIRFLOW_VENV
export PATH="$venv/bin:$PATH"

step "ruff"
ruff check mwaa_logging tests benchmarks
step "mypy (strict)"
mypy

# Two pytest-xdist workers (the CI machine has 2 cores): the suite spends much of its time waiting on Airflow and
# other subprocesses. Each real Airflow's tests stay in one worker (tests/conftest.py). MWAA_LOGGING_TEST_WORKERS=0
# runs everything in one process, in collection order.
workers="${MWAA_LOGGING_TEST_WORKERS:-2}"
parallel=()
[[ "$workers" == "0" ]] || parallel=(-n "$workers" --dist loadgroup)

step "pytest ($workers workers)"
set +e
python -m pytest tests -q -p no:cacheprovider "${parallel[@]}" "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
[[ $status -eq 0 ]] || exit "$status"

step "unit tests on the oldest and newest supported Pythons this machine has (3.10, 3.13), and on 3.12"
# requires-python is >= 3.10; the suite above runs on the default python3. A missing interpreter is reported
# and skipped (Debian and PyPI, this project's registries, do not ship other CPython versions).
find_python() {  # an interpreter for version $1: on PATH, or one that pyenv installed
    local candidate
    if candidate="$(command -v "python$1")" && "$candidate" -c pass 2>/dev/null; then
        echo "$candidate"
        return 0
    fi
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python; do
        if [[ -x "$candidate" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
# 3.12 too: it refuses new threads in atexit hooks (where exit flushes run), which 3.10, 3.11 and 3.13 allow;
# tests/unit/test_exit_paths.py runs a forked child's exit on it.
for version in 3.10 3.12 3.13; do
    if ! other="$(find_python "$version")"; then
        echo "python$version: not on this machine, skipped"
        continue
    fi
    other_venv="$(PYTHON="$other" MWAA_LOGGING_VENV="$repo/.venv-$version" "$repo/scripts/dev-venv.sh" dev | tail -n 1)"
    echo "python$version: $("$other_venv/bin/python" -VV | head -n 1)"
    "$other_venv/bin/python" -m pytest tests/unit -q -p no:cacheprovider "${parallel[@]}"
done

step "benchmarks (short mode)"
if [[ -x scripts/bench.sh ]]; then
    scripts/bench.sh
fi
step "all green"
