#!/usr/bin/env bash
# The main job: set up, then run the demo heating experiment end to end (local executor, CPU).
# bash scripts/demo.sh [OUT]: OUT (default demo-out in the checkout) relative to where it is called.
set -euo pipefail
out=$(realpath -m -- "${1:-$(dirname "$0")/../demo-out}")
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/flytomo demo --out "$out"
