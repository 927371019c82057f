#!/usr/bin/env bash
# One-command, idempotent environment + build for stream_omni_ros.
#
#   bash scripts/setup.sh            # from the repository root; safe to re-run (seconds when done)
#   source .venv/env.sh              # afterwards: venv + ROS environment + the built package
#
# Two paths:
#   * no ROS 2 sourced (a workstation / CI): ROS 2 Kilted rclpy + Fast DDS + colcon/ament/rosidl
#     from PyPI wheels inside the venv.
#   * a ROS 2 distro sourced (a robot: `source /opt/ros/jazzy/setup.bash` first; Jazzy or Kilted):
#     rosdep installs the apt dependencies, the venv sees the system site-packages (the distro's
#     numpy, OpenCV, rclpy), pip adds the rest without replacing them, colcon builds against it.
#
# Variables: VENV (default .venv), PYTHON (default python3.11, or python3 with a sourced distro),
#   TORCH_SPEC (e.g. torch==2.13.0 on a CUDA robot), SKIP_APT=1 (never call apt-get).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
t_start=$(date +%s)
log() { printf '[setup %3ss] %s\n' "$(( $(date +%s) - t_start ))" "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

SYSTEM_ROS=""
if [ -n "${ROS_DISTRO:-}" ] && [ -d "/opt/ros/${ROS_DISTRO}" ]; then SYSTEM_ROS="$ROS_DISTRO"; fi
case "${ROS_DISTRO:-}" in
  humble|galactic|foxy) die "ROS 2 ${ROS_DISTRO} is sourced: stream_omni_ros runs on ROS 2 Jazzy \
and Kilted (its nodes need rclpy's post-set parameter callbacks, new in Iron)." ;;
esac

# ------------------------------------------------------------------ 1. Python
if [ -n "$SYSTEM_ROS" ]; then PYTHON="${PYTHON:-python3}"; else PYTHON="${PYTHON:-python3.11}"; fi
command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found. The ROS 2 Kilted wheels need \
CPython 3.11 (set PYTHON=/path/to/python3.11), or source a ROS 2 distro to build against it."
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ -z "$SYSTEM_ROS" ] && [ "$PYVER" != "3.11" ]; then
  die "$PYTHON is Python $PYVER; the ROS 2 Kilted wheels are built for CPython 3.11 only."
fi
case "$PYVER" in 3.1[1-9]) ;; *) die "Python $PYVER is too old: 3.11 or newer is needed." ;; esac

# ------------------------------------------------------------------ 2. Debian packages
# portaudio19-dev: headers to build pyaudio; espeak-ng + sox: demo and test speech;
# pulseaudio (+utils, ALSA plugin): a user-space sound server for the audio node tests.
APT_PKGS=(portaudio19-dev espeak-ng sox pulseaudio pulseaudio-utils libasound2-plugins)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  [ "${SKIP_APT:-0}" = 1 ] && die "missing Debian packages: ${missing[*]} (SKIP_APT=1 is set)."
  command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get here."
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >/dev/null || die "could not install Debian packages: ${missing[*]}. \
Install them as root (apt-get install ${missing[*]}) and re-run."
else
  log "Debian packages present"
fi

# ------------------------------------------------------------------ 3. venv (repairs a broken one)
venv_ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; }
create_venv() {
  log "creating venv $VENV"
  rm -rf "$VENV"
  if [ -n "$SYSTEM_ROS" ]; then "$PYTHON" -m venv --system-site-packages "$VENV"
  else "$PYTHON" -m venv "$VENV"; fi
}
venv_ok || create_venv
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

# torch: '2.13.0+cpu' is satisfied only by a local CPU wheel that pip's configuration knows, so pinning
# it means pip can never pull the multi-GB CUDA build. Without such a wheel and without a GPU we stop
# rather than download CUDA packages (point TORCH_SPEC / PIP_INDEX_URL at a CPU build yourself).
if [ -z "${TORCH_SPEC:-}" ]; then
  # --dry-run only resolves: nothing is downloaded or copied (a download here left a 180 MB
  # wheel in a temporary folder on every run).
  if "${PIP[@]}" install --dry-run -q --no-deps --no-index 'torch==2.13.0+cpu' \
      >/dev/null 2>&1; then TORCH_SPEC='torch==2.13.0+cpu'
  elif command -v nvidia-smi >/dev/null 2>&1; then TORCH_SPEC='torch==2.13.0'
  elif "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
    TORCH_SPEC="torch==$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
  else die "no GPU and no local CPU torch wheel: set TORCH_SPEC (and pip's index) to a CPU build \
of torch 2.13 so that no CUDA packages are downloaded."; fi
fi

# A robot: rosdep installs the apt keys first (numpy, OpenCV, pyaudio ... from the distro); its
# `-pip` keys go into the venv below instead of the system's Python.
if [ -n "$SYSTEM_ROS" ]; then
  command -v rosdep >/dev/null 2>&1 || die "rosdep is missing: apt install python3-rosdep, then \
sudo rosdep init && rosdep update."
  pip_keys=$(grep -oE 'python3-[a-z0-9-]+-pip' package.xml | sort -u | tr '\n' ' ')
  log "rosdep install (system ROS 2 $SYSTEM_ROS; pip keys go into the venv)"
  rosdep install --from-paths "$ROOT" --ignore-src -y --skip-keys "$pip_keys" >/dev/null \
    || die "rosdep install failed (run it by hand to see why)."
fi
# With a distro, its python's numpy (and OpenCV, ...) stay: see scripts/pip_files.sh.
write_pip_files() { bash scripts/pip_files.sh "$VENV" "$TORCH_SPEC" ${SYSTEM_ROS:+"$PYTHON"}; }
write_pip_files
REQ_FILES=("$VENV/requirements.txt")
pip_hash=$(cat "${REQ_FILES[@]}" "$VENV/constraints.txt" setup.py setup.cfg \
           | sha256sum | cut -c1-16)
PIP_STAMP="$VENV/.stamp-pip"
check_imports() {
  "$VENV/bin/python" - "$SYSTEM_ROS" <<'EOF'
import importlib.metadata as md, sys
cuda = sorted(d.metadata["Name"] for d in md.distributions()
              if (d.metadata["Name"] or "").lower().startswith(("nvidia-", "triton", "cuda-")))
import torch
if (cuda or torch.version.cuda) and not torch.cuda.is_available():
    sys.exit(f"CUDA packages on a machine without a GPU: {cuda} (torch {torch.__version__})")
import rclpy, transformers, safetensors, cv2, numpy, soundfile, soxr, pyaudio, onnxruntime
import silero_vad, rosbags, rosbags.image, yaml, pytest, onnx, bitsandbytes, stream_omni_ros
print(f"torch {torch.__version__} transformers {transformers.__version__} numpy {numpy.__version__}")
EOF
}
# Some pip configurations list local wheel folders that may not exist; that warning is noise.
quiet_pip() {
  local rc=0
  "${PIP[@]}" "$@" >"$VENV/pip-last.log" 2>&1 || rc=$?
  grep -v 'is ignored: it is neither a file nor a dir' "$VENV/pip-last.log" || true
  return $rc
}
install_packages() {
  quiet_pip install -q --upgrade-strategy only-if-needed \
      $(printf -- '-r %s ' "${REQ_FILES[@]}") -c "$VENV/constraints.txt" \
    && quiet_pip install -q --no-deps --no-build-isolation -e . -c "$VENV/constraints.txt" \
    && check_imports
}
if [ "$(cat "$PIP_STAMP" 2>/dev/null)" = "$pip_hash" ] && check_imports >/dev/null 2>&1; then
  log "Python packages up to date"
else
  rm -f "$PIP_STAMP"
  log "pip install (${TORCH_SPEC}; $(grep -c . "$VENV/requirements.txt") requirements)"
  if ! install_packages; then
    # A half-built venv (an interrupted install, a deleted file) is rebuilt from scratch once.
    log "the venv does not work after pip install: recreating $VENV"
    rm -rf "$VENV"; create_venv
    write_pip_files
    install_packages || die "the venv's packages do not import (see above)."
  fi
  echo "$pip_hash" > "$PIP_STAMP"
fi

# ------------------------------------------------------------------ 4. CMake exports of the wheels
# The ROS wheels' *__rosidl_generator_pyExport.cmake files bake the wheel builder's include paths;
# CMake refuses paths that do not exist, and also include paths inside the package's own source
# tree (where .venv lives). Point them at this interpreter's headers and at a link to this venv's
# numpy headers that lives outside the source tree.
if [ -z "$SYSTEM_ROS" ]; then
  PYINC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NPINC_REAL=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  NPINC_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/stream_omni_ros"
  NPINC="$NPINC_DIR/numpy-include-$(printf '%s' "$VENV" | sha256sum | cut -c1-12)"
  mkdir -p "$NPINC_DIR" && ln -sfn "$NPINC_REAL" "$NPINC"
  mapfile -t to_patch < <(grep -rlE --include='*.cmake' \
    '/opt/python/cp311-cp311|site-packages/numpy/_core/include' "$VENV/share" 2>/dev/null || true)
  if ((${#to_patch[@]})); then
    log "patching ${#to_patch[@]} CMake export files"
    sed -i -E -e "s|/opt/python/cp311-cp311/include/python3.11|$PYINC|g" \
      -e "s|[^;\"]*site-packages/numpy/_core/include|$NPINC|g" "${to_patch[@]}"
  fi
fi

# ------------------------------------------------------------------ 5. environment file
bash scripts/write_env.sh "$VENV" "$ROOT" "$SYSTEM_ROS"

# ------------------------------------------------------------------ 6. colcon build (when changed)
# Names and contents of the package's files; a deleted (not yet committed) file just drops out.
src_hash=$( (git ls-files -co --exclude-standard 2>/dev/null || find . -type f) \
  | grep -vE '^(test/|\.ci/|README|docs/)' | LC_ALL=C sort \
  | { xargs -d '\n' sha256sum 2>/dev/null || true; } | sha256sum | cut -c1-16)
BUILD_STAMP="$ROOT/install/.stamp-build"
if [ "$(cat "$BUILD_STAMP" 2>/dev/null)" = "$src_hash-$pip_hash" ] \
   && [ -f "$ROOT/install/setup.bash" ]; then
  log "colcon build up to date"
else
  log "colcon build"; mkdir -p "$ROOT/log"
  rm -f "$BUILD_STAMP"
  ( set +u; . "$VENV/env.sh" --no-overlay
    colcon --log-base "$ROOT/log" build --paths "$ROOT" --build-base "$ROOT/build" \
      --install-base "$ROOT/install" --event-handlers console_direct- summary- \
      --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
      ${NPINC:+"-DPython3_NumPy_INCLUDE_DIR=$NPINC"} \
      >"$ROOT/log/colcon-build.txt" 2>&1 ) \
    || { tail -n 40 "$ROOT/log/colcon-build.txt" >&2; die "colcon build failed (log above)."; }
  echo "$src_hash-$pip_hash" > "$BUILD_STAMP"
fi
log "done: source $VENV/env.sh"
