#!/usr/bin/env bash
# The GPU checks in one run on a lent GPU machine (~3 min; prepared here by
# scripts/gpu-prepare.sh, which fills the git-ignored .gpu/ that the run carries):
#   1. the CUDA tests (tests/recon/test_cuda.py: projector, MLEM, network, training on CUDA
#      against the CPU), log in $OUT/gpu_tests.log;
#   2. inference speed of every shipped network and the seed authors' on 512² slices, float32
#      and autocast: $OUT/inference_cuda.json, $OUT/inference_cuda_amp.json (copy to
#      bench/results/ and into docs/benchmarks.md).
# device tool: run(command="bash bench/gpu.sh", carry=[".gpu"], timeout_s=480)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/flytomo-gpu}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
[ -d .gpu/shared ] && export FLYTOMO_SHARED=$PWD/.gpu/shared
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
} 2>&1 | tee "$out/gpu.txt"
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/recon/test_cuda.py 2>&1 | tee "$out/gpu_tests.log"
for amp in "" --amp; do
    timeout 100 python3 bench/inference.py --device cuda --slices 64 --batch 16 --repeat 3 $amp \
        --json "$out/inference_cuda${amp:+_amp}.json"
done
