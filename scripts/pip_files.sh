#!/usr/bin/env bash
# Writes setup.sh's pip files, requirements.txt and constraints.txt, into a folder.
#   usage: pip_files.sh OUT_DIR TORCH_SPEC [DISTRO_PYTHON]
# Without DISTRO_PYTHON (no ROS 2 distro sourced): scripts/requirements.txt and the ROS wheels,
# numpy pinned to the version tested with them. With it (a robot): the distro's apt packages keep
# numpy, OpenCV, PyYAML, pyaudio, soundfile, Pillow and matplotlib; they are left out and numpy is
# pinned to the distro's version, against which its ROS Python extensions (message packages,
# cv_bridge) were built, so that no pip package can pull a newer numpy over it.
set -euo pipefail
OUT="$1"; TORCH_SPEC="$2"; DISTRO_PYTHON="${3:-}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APT_PROVIDED='^(numpy|opencv-python-headless|pyyaml|pyaudio|soundfile|pillow|matplotlib)=='
if [ -z "$DISTRO_PYTHON" ]; then
  cat "$ROOT/scripts/requirements.txt" "$ROOT/scripts/requirements-ros-wheels.txt" \
    > "$OUT/requirements.txt"
  numpy_pin=2.4.6
else
  grep -viE "$APT_PROVIDED" "$ROOT/scripts/requirements.txt" > "$OUT/requirements.txt"
  numpy_pin=$("$DISTRO_PYTHON" -c 'import numpy; print(numpy.__version__)') || {
    echo "[setup] ERROR: $DISTRO_PYTHON cannot import numpy: install the distro's python3-numpy" \
      "(rosdep install --from-paths . --ignore-src -y)." >&2; exit 1; }
fi
printf '%s\nnumpy==%s\nsetuptools==84.2.1\n' "$TORCH_SPEC" "$numpy_pin" > "$OUT/constraints.txt"
