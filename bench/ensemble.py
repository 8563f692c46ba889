"""Averaging the shipped network's output with another network's (a measurement).

The Table-1 protocol (512², 120 projections over 180°, 1.5° blur, I0 2000): the shipped
model on modified MLEM, the shipped FBP model and ``--other`` (default: the seed's released
network) each on the first stage its card names, and weighted means of their outputs; the
weight is to be chosen on the 8 validation images, then read on the 20 test images.

    .venv/bin/python bench/ensemble.py [--other seed:PATH|PATH.safetensors] [--json FILE]   (~5 min)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchio import save_json
from quality import images, simulate
from recon.geometry import ScanGeometry
from recon.methods import blend_outputs, make_reconstructor
from recon.metrics import psnr, ssim
from recon.weights import load_model

WEIGHTS = (0.5, 0.6, 0.7, 0.8)  # of ours in each mean


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", default="seed:../shared/data/seed-model/pre_trained_model.pth",
                    help="the network averaged with ours: seed:PATH or PATH.safetensors")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    ours, fbp_model = load_model(None), load_model(None, input_kind="fbp")
    other = load_model(args.other)
    name = "seed's" if args.other.startswith("seed:") else other.label
    g = ScanGeometry.create(np.arange(120) * 1.5, 512, blur_angle_deg=1.5)
    result: dict = {"other": args.other}
    for split, validation in (("validation", True), ("test", False)):
        imgs = images(512, 2 if validation else 5, validation)
        truth = np.stack([im for _, im in imgs])
        sino = simulate(truth, g, [2000.0], seed=1, n_sub=16)[2000.0]
        fbp, mlem = make_reconstructor(g, "fbp")(sino), make_reconstructor(g, "mlem-flyscan")(sino)
        first = {"fbp": fbp, "mlem-flyscan": mlem}
        outs = {"ours": ours.apply(mlem), "shipped FBP model": fbp_model.apply(fbp),
                name: other.apply(first[other.input_kind])}
        for w in WEIGHTS:
            for label in (name, "shipped FBP model"):
                outs[f"{w:g} ours + {1 - w:.1f} {label}"] = blend_outputs(outs["ours"], outs[label], 1 - w)
        result[split] = {}
        for label, vol in outs.items():
            p = float(np.mean([psnr(a, b) for a, b in zip(vol, truth)]))
            s = float(np.mean([ssim(a, b) for a, b in zip(vol, truth)]))
            result[split][label] = {"psnr": p, "ssim": s}
            print(f"{split:>10} {label:>32} {p:6.2f} / {s:.3f}", flush=True)
    save_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
