#!/usr/bin/env bash
# On a GPU machine with Python 3.12, a CUDA torch and transformers but no network, ROS or
# espeak-ng: install the wheels of .gpu_kit/ (made by scripts/gpu_kit.sh), then run the GPU
# benchmark and checks. Results go into $OUT (default gpu_out/), at most eight files:
#   bash scripts/gpu_bench.sh bench    # stream-omni-ros bench, full size on CUDA
#   bash scripts/gpu_bench.sh checks   # gpu-marked tests, model and vocoder benchmarks
# SIZE, DEVICE, LAYERS, TURNS and PYTHON override the defaults (full, cuda, 0, 5, python3):
# SIZE=tiny DEVICE=cpu rehearses the same steps without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
PART=${1:-bench}
OUT=${OUT:-gpu_out}
PYTHON=${PYTHON:-python3}
SIZE=${SIZE:-full}; DEVICE=${DEVICE:-cuda}; LAYERS=${LAYERS:-0}; TURNS=${TURNS:-5}
SITE=${SITE:-/tmp/stream_omni_site}
mkdir -p "$OUT"
"$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
  --no-cache-dir --upgrade --target "$SITE" .gpu_kit/wheels/*.whl \
  || { echo "gpu_bench: installing .gpu_kit/wheels failed (run scripts/gpu_kit.sh first)"
       exit 1; }
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1

describe_machine() {
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  else echo "no nvidia-smi on this machine"; fi
  "$PYTHON" - <<'PY'
import platform, numpy, torch, transformers
print(f"python {platform.python_version()} torch {torch.__version__} "
      f"transformers {transformers.__version__} numpy {numpy.__version__} "
      f"cuda {torch.cuda.is_available()}")
PY
}

run_bench() {
  "$PYTHON" -m stream_omni_ros.bench --size "$SIZE" --device "$DEVICE" --layers "$LAYERS" \
    --turns "$TURNS" --questions-from .gpu_kit/questions --no-ros --out "$OUT" \
    2>&1 | tee "$OUT/bench.log"
}

run_checks() {
  local status=0
  "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu test/gpu test/unit/model_gen/test_compiled.py \
    2>&1 | tee "$OUT/pytest_gpu.log" || status=1
  local layers=(); [ "$LAYERS" != 0 ] && layers=(--layers "$LAYERS")
  "$PYTHON" -m stream_omni_ros.model.bench --device "$DEVICE" --size "$SIZE" "${layers[@]}" \
    2>&1 | tee "$OUT/model_bench.log" || status=1
  "$PYTHON" -m stream_omni_ros.vocoder.bench --device "$DEVICE" --size "$SIZE" \
    2>&1 | tee "$OUT/vocoder_bench.log" || status=1
  return $status
}

describe_machine 2>&1 | tee "$OUT/machine.txt"
case "$PART" in
  bench) run_bench ;;
  checks) run_checks ;;
  *) echo "gpu_bench: unknown part '$PART'; expected bench or checks"; exit 2 ;;
esac
