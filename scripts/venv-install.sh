#!/usr/bin/env bash
# Install packages into a virtualenv: venv-install.sh <venv> <pip install arguments...>
# With uv (from PyPI, installed into the virtualenv) when it can: ~5x faster than pip (a dev virtualenv in ~12 s
# instead of ~57 s on the 2-core CI machine), which keeps the test command's bootstrap short. If uv cannot be
# had or its install fails (an index only pip is configured for, a proxy), pip does the same install.
set -euo pipefail
venv="$1"
shift
if [[ "${MWAA_LOGGING_NO_UV:-}" != "1" ]] \
    && "$venv/bin/python" -m pip install --quiet uv >&2 \
    && "$venv/bin/python" -m uv pip install --quiet --python "$venv/bin/python" "$@" >&2; then
    exit 0
fi
echo "uv unavailable or failed: installing with pip" >&2
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2
"$venv/bin/python" -m pip install --quiet "$@" >&2
