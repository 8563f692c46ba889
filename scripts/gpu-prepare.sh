#!/usr/bin/env bash
# Prepare, in .gpu/ (git-ignored through .git/info/exclude), what bench/gpu.sh needs on a lent
# GPU machine. Its image already has torch, numpy, scipy, h5py, scikit-image, safetensors,
# tifffile, pyyaml, tqdm, matplotlib and pandas (Python 3.12, x86-64: see
# /work/.library/device/KINDS.md); .gpu/wheels/ gets pydantic and zarr with their own needs, at
# this checkout's .venv versions, and .gpu/shared/ a copy of the seed authors' network
# (../shared does not travel), so the GPU rows include it. About 16 MB; ~20 s.
#
# usage: bash scripts/gpu-prepare.sh
#        then the device tool's run: carry [".gpu"], command "bash bench/gpu.sh", timeout_s 480
set -euo pipefail
cd "$(dirname "$0")/.."
names=(pydantic pydantic_core annotated-types typing-inspection typing_extensions zarr numcodecs donfig google-crc32c)
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/wheels
for name in "${names[@]}"; do
    version=$(.venv/bin/python -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name")
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        -d .gpu/wheels "$name==$version" 2>&1 | grep -v "^WARNING: Location" || true
done
seed=$(.venv/bin/python -c 'from recon.weights import seed_checkpoint_path as p; print(p())')
if [ -f "$seed" ]; then
    mkdir -p .gpu/shared/data/seed-model
    cp "$seed" .gpu/shared/data/seed-model/
fi
ls -1 .gpu/wheels
du -sh .gpu
