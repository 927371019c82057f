#!/usr/bin/env bash
# The main job: set everything up (idempotent) and run the demo.
#   bash scripts/demo.sh [demo args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
set +u; . "${VENV:-$ROOT/.venv}/env.sh"; set -u
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}"
exec python -m stream_omni_ros.cli demo "$@"
