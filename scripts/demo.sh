#!/usr/bin/env bash
# The main job: set up, then run the demo heating experiment end to end (local executor, CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/flytomo demo --out "${1:-demo-out}"
