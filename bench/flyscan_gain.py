"""Where modelling the blur pays: mlem against mlem-flyscan (fast and subangle operators) at 50 and 70 iterations.

One line of JSON per call: mean PSNR (inside the disk) over four phantoms (one per family,
validation-range seeds 9300+, never test images) of a scan simulated with 32 sub-angles per
exposure and Poisson counts, and the seconds each method took (2 threads).

    .venv/bin/python bench/flyscan_gain.py SIZE BLUR_DEG I0 N_ANGLES >> bench/results/flyscan_gain.jsonl
"""
from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from recon.geometry import ScanGeometry
from recon.methods import reconstruct
from recon.metrics import psnr
from recon.phantoms import FAMILIES, make_phantom
from recon.simulate import line_integrals_from_counts, simulate_flyscan

#: (label, method, options) compared
METHODS = (("mlem50", "mlem", {"iterations": 50}), ("mlem70", "mlem", {"iterations": 70}),
           ("fast50", "mlem-flyscan", {"iterations": 50}), ("fast70", "mlem-flyscan", {"iterations": 70}),
           ("sub50", "mlem-flyscan", {"iterations": 50, "operator": "subangle"}),
           ("sub70", "mlem-flyscan", {"iterations": 70, "operator": "subangle"}))


def one_setting(n: int, blur_deg: float, i0: float, n_angles: int) -> dict:
    """PSNR (dB) of every method in :data:`METHODS` and its seconds, for one scan setting."""
    angles = (np.arange(n_angles) + 0.5) * 180.0 / n_angles
    truths = np.stack([make_phantom(f, n, 9300 + k) for k, f in enumerate(FAMILIES)]).astype(np.float32)
    sino = line_integrals_from_counts(simulate_flyscan(truths, angles, blur_deg, i0, seed=5, n_sub=32))
    g = ScanGeometry.create(angles, n, blur_angle_deg=blur_deg)
    row: dict = {"n": n, "blur": blur_deg, "i0": i0, "angles": n_angles}
    for label, method, options in METHODS:
        t = time.perf_counter()
        vol = reconstruct(sino, g, method, **options)
        row[label + "_s"] = round(time.perf_counter() - t, 1)
        row[label] = round(float(np.mean([psnr(v, truth) for v, truth in zip(vol, truths)])), 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, kind in (("size", int), ("blur_deg", float), ("i0", float), ("n_angles", int)):
        ap.add_argument(name, type=kind)
    args = ap.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")  # the simulator's medium and hints: not what is measured
    print(json.dumps(one_setting(args.size, args.blur_deg, args.i0, args.n_angles)), flush=True)


if __name__ == "__main__":
    main()
