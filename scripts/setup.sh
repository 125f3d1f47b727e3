#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv and install the project with the given extras.
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh dev,model
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
venv="${VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating virtualenv $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
if [[ ",$extras," == *",model,"* || ",$extras," == *",torch,"* ]]; then
  # The CPU wheel of this exact torch is on the machine's disk; an unpinned torch would download GBs of CUDA.
  "$venv/bin/pip" install -q "torch==2.13.0"
fi
echo "==> installing hypergraph-sidecar${extras:+[$extras]}"
"$venv/bin/pip" install -q -e ".${extras:+[$extras]}"
bash scripts/write_env.sh
# The web server serves static files itself (whitenoise): gather them where it looks, so the admin is styled.
DEV_MODE=1 "$venv/bin/python" manage.py collectstatic --noinput -v 0
