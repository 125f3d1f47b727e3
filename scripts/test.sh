#!/usr/bin/env bash
# The test command: install, make sure PostgreSQL and Redis run, and run the whole suite against PostgreSQL
# (the end-to-end tests start a live server and a real Celery worker process themselves).
# For the whole suite (no arguments) or with SAELENS_ORACLE=1, the SAELens oracle test runs first in its own venv
# (scripts/saelens_oracle.sh; SAELENS_ORACLE=0 leaves it out), so the suite's summary is the last line printed.
# The command fails if either run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,model,s3
bash scripts/services.sh
# The browser tests drive Debian's chromium with Playwright (which cannot download a browser of its own here).
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export DEV_MODE=1
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/15}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
status=0
if [ "${SAELENS_ORACLE:-$([ $# -eq 0 ] && echo 1 || echo 0)}" = 1 ]; then
  bash scripts/saelens_oracle.sh || status=1
fi
"${VENV:-.venv}/bin/python" -m pytest -q -p no:cacheprovider "$@" || status=$?
exit "$status"
