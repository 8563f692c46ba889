#!/usr/bin/env bash
# Set up flytomo in a virtual environment at .venv in the checkout (idempotent).
# Torch: the CPU build torch==2.13.0 is taken first where no torch is present, so the
# torch>=2.4 range in pyproject.toml does not pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "setup: flytomo needs Python >= 3.10; $PY is $("$PY" -V 2>/dev/null || echo 'not found') (PYTHON=python3.11 bash $0)" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1

pip_install() {  # pip's own status (a failed install stops the set-up), its location warnings hidden
    if ! .venv/bin/pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; then
        echo "setup: 'pip install $*' failed (above); nothing is marked installed: fix it and run again" >&2
        exit 1
    fi
}

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    pip_install "torch==2.13.0"
fi
stamp=.venv/.flytomo-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    rm -f "$stamp"
    pip_install -e ".[all]"
    # imported from outside the checkout, so that the installed packages are what is checked
    (cd / && "$OLDPWD/.venv/bin/python" -c "import recon, hpc, analysis, torch, zarr, h5py")
    touch "$stamp"
fi
