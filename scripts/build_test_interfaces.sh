#!/usr/bin/env bash
# Builds the test-only interface packages under test/interfaces/ (stand-ins for the released
# audio_common_msgs and hri_msgs) with colcon, as scripts/setup.sh builds the package's own
# interfaces; skipped when their sources are unchanged. Never part of the package's install.
#   bash scripts/build_test_interfaces.sh    # after scripts/setup.sh; prints the install prefix
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
SRC="$ROOT/test/interfaces"
BASE="$ROOT/build/test_interfaces"
STAMP="$BASE/install/.stamp-build"
[ -f "$VENV/env.sh" ] || { echo "[test interfaces] run scripts/setup.sh first" >&2; exit 1; }
src_hash=$( (cd "$SRC" && find . -type f | LC_ALL=C sort | xargs -d '\n' sha256sum; \
  cat "$VENV/.stamp-pip" 2>/dev/null) | sha256sum | cut -c1-16)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$src_hash" ] || [ ! -f "$BASE/install/setup.bash" ]; then
  echo "[test interfaces] colcon build of $SRC" >&2
  rm -rf "$BASE"; mkdir -p "$BASE"
  # The same numpy include link and CMake arguments as setup.sh's build of the package.
  NPINC=$(ls -d "${XDG_CACHE_HOME:-$HOME/.cache}/stream_omni_ros/numpy-include-$(printf '%s' \
    "$VENV" | sha256sum | cut -c1-12)" 2>/dev/null || true)
  ( set +u; . "$VENV/env.sh" --no-overlay
    colcon --log-base "$BASE/log" build --base-paths "$SRC"/*/ --build-base "$BASE/build" \
      --install-base "$BASE/install" --event-handlers console_direct- summary- \
      --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
      ${NPINC:+"-DPython3_NumPy_INCLUDE_DIR=$NPINC"} >"$BASE/colcon-build.txt" 2>&1 ) \
    || { tail -n 40 "$BASE/colcon-build.txt" >&2; echo "[test interfaces] build failed" >&2
         exit 1; }
  echo "$src_hash" > "$STAMP"
fi
echo "$BASE/install"
