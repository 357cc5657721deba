#!/usr/bin/env bash
# Create or update the cached Airflow virtualenv used by the `airflow`-marked tests.
#
#   scripts/airflow-venv.sh            # Airflow 3.3 into .venv-airflow (default)
#   AIRFLOW_VERSION=2.10.5 AIRFLOW_VENV=.venv-airflow2 scripts/airflow-venv.sh
#   AIRFLOW_VERSION=3.0.6 AIRFLOW_VENV=.venv-airflow30 scripts/airflow-venv.sh   (also 3.1.*, 3.2.*)
#
# Idempotent: when the venv already holds the requested Airflow and the project is installed
# editable in it, it returns in well under a second. Prints the venv path on its last line.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
airflow_version="${AIRFLOW_VERSION:-3.3.*}"
venv="${AIRFLOW_VENV:-$repo/.venv-airflow}"
python="${PYTHON:-python3}"
stamp="$venv/.mwaa-logging-airflow-stamp"

# Without Airflow's constraints files (not reachable here), pin what a version's own requirements leave open
# and its code does not support.
case "$airflow_version" in
    2.11.*)  # Airflow 2.11 moved to Flask-Session 0.8 and Werkzeug 3
        pins=("apache-airflow-providers-amazon<9.18" "marshmallow<4") ;;
    2.*)  # Airflow 2.10 predates several dependency majors
        pins=("apache-airflow-providers-amazon<9.18" "marshmallow<4" "connexion<3" "flask-session<0.6"
              "werkzeug<3" "pendulum<4") ;;
    3.0.*)  # allows any FastAPI >= 0.115; its 3.0.6 constraints file (MWAA's image uses it) pins 0.116.1
        pins=("apache-airflow-providers-amazon" "fastapi<0.117") ;;
    3.2.*)  # allows any FastAPI >= 0.129, but its API server does not start with 0.137 or later
        pins=("apache-airflow-providers-amazon" "fastapi<0.137") ;;
    *)
        pins=("apache-airflow-providers-amazon") ;;
esac
requirements=("apache-airflow==$airflow_version" "${pins[@]}")
wanted="$(printf '%s\n' "${requirements[@]}" "$repo" "$(sha1sum "$repo/pyproject.toml" | cut -c1-12)")"

# One builder at a time per virtualenv (test workers, two suites): the others wait, then find it ready.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9

if [[ -x "$venv/bin/airflow" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    echo "$venv"
    exit 0
fi

[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
# One resolution for Airflow, the provider and the project (editable, with its runtime dependencies).
"$repo/scripts/venv-install.sh" "$venv" "${requirements[@]}" -e "$repo"
"$venv/bin/airflow" version >&2
printf '%s' "$wanted" >"$stamp"
echo "$venv"
