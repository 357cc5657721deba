#!/usr/bin/env bash
# Create or update the project's virtualenv (.venv) with the package and its dev tools.
# Idempotent and quick when nothing changed. Prints the venv path on its last line.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MWAA_LOGGING_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
extras="${1:-dev}"
stamp="$venv/.mwaa-logging-stamp-$extras"
wanted="$(sha1sum "$repo/pyproject.toml" | cut -c1-40)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    echo "$venv"
    exit 0
fi
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "installing python3-venv (Debian package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2
fi
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$repo/scripts/venv-install.sh" "$venv" -e "$repo[$extras]"
printf '%s' "$wanted" >"$stamp"
echo "$venv"
