#!/usr/bin/env bash
# The test command: set everything up (idempotent) and run the whole test suite.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# The test-only stand-ins of audio_common_msgs and hri_msgs (cached; never installed).
bash scripts/build_test_interfaces.sh >/dev/null
set +u; . "${VENV:-$ROOT/.venv}/env.sh"; set -u
# A private DDS domain per run so parallel runs on one machine never see each other.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}"
export HF_HUB_OFFLINE=1
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID rmw=${RMW_IMPLEMENTATION:-default}"
exec python -m pytest "${@:--q}" test
