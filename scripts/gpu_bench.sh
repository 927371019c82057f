#!/usr/bin/env bash
# Everything that needs a GPU, in one call of at most 8 minutes on an H100 from a bare machine
# (Python 3.12, a CUDA torch and transformers; no network, ROS or espeak-ng):
#   bash scripts/gpu_bench.sh
# runs, each part under its own time limit and logged into $OUT (default gpu_out/):
#   checks       gpu-marked tests (CUDA == CPU logits, bf16 generation end to end, compiled
#                decode == eager ids, speech tokenizer on the CUDA provider or its fallback,
#                streaming vocoder), the quantization tests with the one-layer full-width model
#   model bench  step timings vs the copy bound and transformers eager, then 8bit and 4bit
#                rebuilt from the same weights: parity with bf16 and step timings; memory table
#   vocoder      streaming vocoder real-time factor
#   bench        spoken turns through the engine: first text and first audio after the endpoint
# Missing packages come from .gpu_kit/wheels (scripts/gpu_kit.sh); spoken questions from
# .gpu_kit/questions, or espeak-ng where it is installed.
# SIZE=tiny DEVICE=cpu runs the same parts with the tiny model on a CPU, quickly: CI does so
# (test/unit/test_gpu_bench_script.py), so a change that breaks this script fails CI.
# Variables: SIZE (full), DEVICE (cuda), LAYERS (0 = all), TURNS (5), PYTHON (python3), OUT,
# KIT (.gpu_kit: where the wheels and recorded questions are).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
PYTHON=${PYTHON:-python3}
SIZE=${SIZE:-full}; DEVICE=${DEVICE:-cuda}; LAYERS=${LAYERS:-0}; TURNS=${TURNS:-5}
SITE=${SITE:-/tmp/stream_omni_site}
KIT=${KIT:-.gpu_kit}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

if ls "$KIT"/wheels/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$SITE" "$KIT"/wheels/*.whl \
    || { echo "gpu_bench: installing $KIT/wheels failed" | tee -a "$SUMMARY"; exit 1; }
  export PYTHONPATH="$SITE:$PWD"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PYTHON" -c "import torch, transformers, soxr, silero_vad, bitsandbytes" 2>/dev/null; then
  echo "gpu_bench: packages missing; run scripts/gpu_kit.sh on a machine with pip and copy" \
       ".gpu_kit/ here" | tee -a "$SUMMARY"
  exit 1
fi

# Full size on a GPU as deployed; the tiny rehearsal keeps every count small.
if [ "$SIZE" = tiny ]; then
  MODEL_ARGS=(--repeats 2 --prompt-len 32 --text-tokens 8 --units 16 --parity-steps 8)
  BENCH_ARGS=(--turns 1 --pace 0 --text-tokens 8 --units 25 --vocoder-steps 2
              --step-repeats 2 --step-prompt-len 16 --message-repeats 2)
  VOCODER_ARGS=(--units 50 --repeats 1 --closeness-units 0)
  LIMITS=(180 240 120 120 300)  # generous: CI machines are small and shared
else
  MODEL_ARGS=(--repeats 10); BENCH_ARGS=(--turns "$TURNS"); VOCODER_ARGS=()
  LIMITS=(100 120 20 60 150)  # seconds: checks, model, memory, vocoder, bench (sum 450)
fi
LAYER_ARGS=(); [ "$LAYERS" != 0 ] && LAYER_ARGS=(--layers "$LAYERS")
QUESTIONS=(); [ -d "$KIT/questions" ] && QUESTIONS=(--questions-from "$KIT/questions")
TESTS=(test/gpu test/unit/model_gen/test_compiled.py test/unit/model_gen/test_quantization.py)
MARKS="gpu or full_width"; [ "$DEVICE" = cpu ] && MARKS="gpu"
status=0

# part NAME LIMIT LOG COMMAND...: run under a time limit, append to LOG, record the outcome.
part() {
  local name=$1 limit=$2 log=$3; shift 3
  local start=$SECONDS rc=0
  echo "== $name: $*" >> "$log"
  timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1 || rc=$?
  local verdict=ok; [ "$rc" != 0 ] && { verdict="FAILED (exit $rc)"; status=1; }
  [ "$rc" = 124 ] && verdict="FAILED (over its ${limit} s limit)"
  printf '%-12s %-28s %4d s  (%s)\n' "$name" "$verdict" $((SECONDS - start)) "$log" \
    | tee -a "$SUMMARY"
}

{
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  else echo "no nvidia-smi on this machine"; fi
  "$PYTHON" -c "import platform, torch, transformers, bitsandbytes as b
print(f'python {platform.python_version()} torch {torch.__version__} transformers '
      f'{transformers.__version__} bitsandbytes {b.__version__} cuda {torch.cuda.is_available()}')"
  echo "size $SIZE device $DEVICE layers $LAYERS"
} 2>&1 | grep -v kernels-community | tee -a "$SUMMARY"

STREAM_OMNI_FULL_WIDTH=$([ "$DEVICE" = cuda ] && echo 1 || echo 0) \
  part checks "${LIMITS[0]}" "$OUT/checks.log" \
  "$PYTHON" -m pytest -q -p no:cacheprovider -m "$MARKS" "${TESTS[@]}"
part model "${LIMITS[1]}" "$OUT/model_bench.log" \
  "$PYTHON" -m stream_omni_ros.bench.model_bench --device "$DEVICE" --size "$SIZE" \
  "${LAYER_ARGS[@]}" --quantized 8bit,4bit "${MODEL_ARGS[@]}"
part memory "${LIMITS[2]}" "$OUT/model_bench.log" "$PYTHON" -m stream_omni_ros.bench.memory_table
part vocoder "${LIMITS[3]}" "$OUT/checks.log" \
  "$PYTHON" -m stream_omni_ros.bench.vocoder_bench --device "$DEVICE" --size "$SIZE" \
  "${VOCODER_ARGS[@]}"
part bench "${LIMITS[4]}" "$OUT/bench.log" \
  "$PYTHON" -m stream_omni_ros.bench --size "$SIZE" --device "$DEVICE" "${LAYER_ARGS[@]}" \
  "${QUESTIONS[@]}" --no-ros --out "$OUT" "${BENCH_ARGS[@]}"
echo "gpu_bench: $([ $status = 0 ] && echo 'every part passed' || echo 'some part FAILED')" \
  | tee -a "$SUMMARY"
exit $status
