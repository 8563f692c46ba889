#!/usr/bin/env bash
# Set up flytomo in a virtual environment at .venv in the checkout (idempotent).
# Torch: the CPU build torch==2.13.0 is taken first where no torch is present, so the
# torch>=2.4 range in pyproject.toml does not pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
fi
stamp=.venv/.flytomo-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q -e ".[all]" 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import recon, hpc, analysis, torch, zarr, h5py" 
    touch "$stamp"
fi
