#!/usr/bin/env bash
# The demo on a fresh machine: bootstrap the virtualenv, then run `mwaa-logging demo` on the embedded
# local AWS endpoint. Extra arguments go to the demo (e.g. --compare watchtower).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$repo/scripts/dev-venv.sh" dev | tail -n 1)"
cd "$repo"
exec "$venv/bin/mwaa-logging" demo "$@"
