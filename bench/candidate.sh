#!/usr/bin/env bash
# The ship-rule benches for a candidate mlem-flyscan model against the shipped default:
# heating gate (24 scans), crack contrast, foreign images, real particle, Table-1 protocol.
# ~8 min on 2 free cores; JSON under runs/eval-TAG/ (copy to bench/results/*_stageN.json
# when the candidate ships). The rule itself (gate MAE and |bias| <= 0.15 points, no loss
# elsewhere, >= 0.1 dB gain on one bench) is in docs/benchmarks.md.
#
# usage: bash bench/candidate.sh MODEL.safetensors TAG
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bash bench/candidate.sh MODEL.safetensors TAG" >&2; exit 2; }
model=$1 tag=$2 py=.venv/bin/python default=recon/weights/rrdb-mlem-flyscan.safetensors
out=runs/eval-$tag
mkdir -p "$out"
"$py" bench/crack_gate.py "/tmp/flytomo-gate-$tag" "$model" default --json "$out/crack_gate.json"
"$py" bench/crack_contrast.py "$model" "$default" --json "$out/crack_contrast.json"
"$py" bench/foreign_images.py --methods mlem-flyscan --model "$tag=$model" --json "$out/foreign_images.json"
"$py" bench/real_particle.py --rrdb "$model" "$default" --out "$out/real_particle.png" --json "$out/real_particle.json"
"$py" bench/quality.py --per-family 5 --photons 2000 --reference-blur --rrdb "$model" "$default" --json "$out/quality.json"
