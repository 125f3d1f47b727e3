#!/usr/bin/env bash
# One-shot GPU figures: SAE decode (ours vs fp32 encode + topk vs bare bf16 GEMM) and capture overhead on a
# random-weight ~1B Llama. Run from the repository root:  bash benchmarks/gpu_figures.sh
#
# Logs go to $OUT (default /tmp/out): env.log, sae_gpu.log, capture_gpu.log and summary.txt. Each bench runs under
# its own `timeout` (SIGINT first, so Python cleans its temporary dictionary, then SIGKILL), and the second runs
# whatever happened to the first; the whole script stays under 4.5 minutes (about 2.5 when nothing times out).
#
# Wheels for what the machine lacks (zstandard, for the capture's f16-zstd shards) are installed from .whl/ when that
# folder exists. Environment overrides: PY (python), SAE_TIMEOUT, CAPTURE_TIMEOUT (seconds), SAE_ARGS, CAPTURE_ARGS
# (extra arguments, e.g. for a CPU smoke test of this script), SECTIONS (which benches: "sae capture" by default;
# SECTIONS=capture runs the capture overhead alone, about 1.5 minutes).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
SAE_TIMEOUT=${SAE_TIMEOUT:-100}
CAPTURE_TIMEOUT=${CAPTURE_TIMEOUT:-140}
SECTIONS=${SECTIONS:-sae capture}
wants() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
began=$(date +%s)

{
  echo "== $(date -u +%FT%TZ) $(uname -m) ${HOSTNAME:-} repo $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    echo "== installing carried wheels: $(cd .whl && echo *.whl)"
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl; then
      echo "installed into /tmp/site"
    else  # no pip: a wheel is a zip whose top level is what --target would install
      echo "WARNING: pip install failed; unzipping the wheels into /tmp/site instead"
      "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall("/tmp/site") for w in sys.argv[1:]]' .whl/*.whl
    fi
  fi
  nvidia-smi || echo "(nvidia-smi not available)"
  df -h /tmp /dev/shm 2>/dev/null
  free -g 2>/dev/null
} 2>&1 | tee "$OUT/env.log"
if [ -d /tmp/site ]; then export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}; fi

"$PY" - <<'EOF' 2>&1 | tee -a "$OUT/env.log"
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "transformers", "numpy", "safetensors", "zstandard", "prometheus_client", "sae_lens"):
    try:
        module = importlib.import_module(name)
        print(f"{name:18} {getattr(module, '__version__', '?')}")
    except Exception as exc:  # noqa: BLE001
        print(f"{name:18} MISSING ({type(exc).__name__}: {exc})")
import torch
print("cuda available", torch.cuda.is_available(), "| device", torch.cuda.get_device_name() if torch.cuda.is_available() else None,
      "| torch.version.cuda", torch.version.cuda)
EOF

if wants sae; then
  echo "== [$(( $(date +%s) - began )) s] SAE decode GPU section (timeout ${SAE_TIMEOUT} s)" | tee "$OUT/sae_gpu.log"
  # shellcheck disable=SC2086
  timeout -s INT -k 15 "$SAE_TIMEOUT" "$PY" benchmarks/sae_decode_bench.py --skip-cpu --repeats 5 ${SAE_ARGS:-} \
    2>&1 | tee -a "$OUT/sae_gpu.log"
  echo "== SAE bench exit status ${PIPESTATUS[0]} (124 = timed out) after $(( $(date +%s) - began )) s" \
    | tee -a "$OUT/sae_gpu.log"
fi

if wants capture; then
  echo "== [$(( $(date +%s) - began )) s] capture GPU section (timeout ${CAPTURE_TIMEOUT} s)" | tee "$OUT/capture_gpu.log"
  # shellcheck disable=SC2086
  timeout -s INT -k 15 "$CAPTURE_TIMEOUT" "$PY" benchmarks/model_capture_bench.py --skip-cpu --store memory \
    --compress f16-zstd --rounds 5 --min-rounds 3 --deadline-s 90 --modes capture-4,hidden_states \
    --batches 1,16 --new-tokens 64 --prefill 2048 ${CAPTURE_ARGS:-} 2>&1 | tee -a "$OUT/capture_gpu.log"
  echo "== capture bench exit status ${PIPESTATUS[0]} (124 = timed out) after $(( $(date +%s) - began )) s" \
    | tee -a "$OUT/capture_gpu.log"
fi

{
  if wants sae; then
    echo "== SAE decode"
    grep -E "^(== GPU|baseline|bare|saelens|ours|check|breakdown|host share|diagnostic|Traceback|[A-Za-z]*Error)|exit status" \
      "$OUT/sae_gpu.log"
    echo
  fi
  if wants capture; then
    echo "== capture overhead"
    grep -E "^(GPU:|capture check|== GPU|== summary| +(off|capture-4|hidden_states):|Traceback|[A-Za-z]*Error)|^ +GPU (decode|prefill)|^ +model thread =|end to end incl|capture-4 / hidden|staging per call|rows dropped|exit status" \
      "$OUT/capture_gpu.log"
  fi
} > "$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
echo "== done in $(( $(date +%s) - began )) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
