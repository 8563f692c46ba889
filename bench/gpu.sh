#!/usr/bin/env bash
# The GPU checks in one run on a lent GPU machine (~3 min; prepared here by
# scripts/gpu-prepare.sh, which fills the git-ignored .gpu/ that the run carries):
#   1. the CUDA tests (tests/recon/test_cuda.py: projector, MLEM, network, training on CUDA
#      against the CPU), log in $OUT/gpu_tests.log;
#   2. inference speed of every shipped network and the seed authors' on 512² slices, float32
#      and autocast: $OUT/inference_cuda.json, $OUT/inference_cuda_amp.json (copy to
#      bench/results/ and into docs/benchmarks.md);
#   3. projectors too large to keep, stored against sampled (the GPU's way above the cache):
#      $OUT/large_projector_cuda.json (docs/benchmarks.md, "Projectors too large to keep");
#   4. only with FLYTOMO_GPU_TRAIN_S=SECONDS: jobs/train-gpu.yaml for at most that long
#      of training, after its pairs are simulated on the GPU (given 4 min; a run stopped keeps its
#      checkpoint), its log, metrics, model and checkpoint in $OUT (a few MB).
# device tool: run(command="bash bench/gpu.sh", carry=[".gpu"], timeout_s=480), or
#   run(command="FLYTOMO_GPU_TRAIN_S=300 bash bench/gpu.sh", carry=[".gpu"], timeout_s=590)
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
timeout 150 python3 bench/large_projector.py --device cuda --ways stored sampled --cache-gb 40 \
    --cases 512x360x8 1024x360x8 2048x1440x2 --json "$out/large_projector_cuda.json"
if [ "${FLYTOMO_GPU_TRAIN_S:-0}" -gt 0 ]; then
    timeout $((FLYTOMO_GPU_TRAIN_S + 240)) python3 -m hpc.cli train --config jobs/train-gpu.yaml --workers 8 --quiet \
        --time-limit "$FLYTOMO_GPU_TRAIN_S" 2>&1 | tee "$out/train_gpu.log"
    for f in runs/rrdb-mlem-gpu/{metrics.jsonl,rrdb-mlem-flyscan.safetensors,rrdb-mlem-flyscan.json,checkpoint.pt}; do
        [ -f "$f" ] && cp "$f" "$out/"
    done
fi
