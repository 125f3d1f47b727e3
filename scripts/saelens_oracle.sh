#!/usr/bin/env bash
# The SAELens oracle test (tests/unit/sae/test_saelens_oracle.py: our encoder against SAELens's own `encode`), run for
# real in a virtualenv of its own, because sae-lens pins its own stack (transformers, transformer-lens, datasets...).
# Builds the venv once (about 2 min, ~2 GB) and reuses it; fails if the test fails, errors, or skips.
# Usage: scripts/saelens_oracle.sh [PYTEST ARGS]   (SAELENS_VENV=path, default .venv-saelens)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SAELENS_VENV:-.venv-saelens}"
# torch pinned: the CPU wheel of this exact release is on the machine's disk; an unpinned torch would download GBs of
# CUDA. prometheus-client is the one dependency of the `sae` package that sae-lens does not bring.
requirements=("torch==2.13.0" "sae-lens>=6,<7" "prometheus-client>=0.20" "pytest>=8.0")
stamp="$venv/.saelens-oracle-requirements"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${requirements[*]}" ]; then
  start=$SECONDS
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> SAELens oracle: creating virtualenv $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
  fi
  echo "==> SAELens oracle: installing ${requirements[*]} into $venv (about 2 minutes, once)"
  "$venv/bin/pip" install -q "${requirements[@]}"
  echo "${requirements[*]}" > "$stamp"
  echo "==> SAELens oracle: $venv ready in $((SECONDS - start)) s" \
       "(sae-lens $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("sae-lens"))'))"
fi

report="$(mktemp)"
trap 'rm -f "$report"' EXIT
echo "==> SAELens oracle: tests/unit/sae/test_saelens_oracle.py in $venv"
# PYTHONPATH: the `sae` package and tests/ are imported from the checkout (pure numpy/torch; no Django needed).
# The ignored warning is pyproject's DJANGO_SETTINGS_MODULE, an option of pytest-django, which this venv lacks.
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" -m pytest -q -p no:cacheprovider -rs \
  -W "ignore::pytest.PytestConfigWarning" --junitxml="$report" tests/unit/sae/test_saelens_oracle.py "$@"
# pytest passed; a skip here (sae-lens or torch not importable) is a failure too: this run exists to not skip.
"$venv/bin/python" - "$report" <<'EOF'
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suite = root if root.tag == "testsuite" else root.find("testsuite")
tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
if tests == 0 or skipped:
    sys.exit(f"SAELens oracle: {tests} tests collected, {skipped} skipped; it must run every case")
print(f"==> SAELens oracle: {tests} cases agree with sae-lens")
EOF
