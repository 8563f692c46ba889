#!/usr/bin/env bash
# The test job: set up, then run the test suite (slow tests too when FLYTOMO_SLOW=1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
