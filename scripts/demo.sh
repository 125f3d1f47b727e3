#!/usr/bin/env bash
# The main job: install, then run the whole product on the bundled sample (SQLite, local files, local Redis)
# and print the URLs of the finished graphs; Ctrl-C or SIGTERM stops every process it started. Extra arguments go to
# `manage.py demo` (e.g. --exit, --fresh, --port 8001).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DEV_MODE="${DEV_MODE:-1}"
exec "${VENV:-.venv}/bin/python" manage.py demo "$@"
