"""Modified MLEM stopped at the noise (``iterations: auto``) against the fixed default, by slice size
and photons: mean PSNR over the four phantom families (validation seeds, never the test images).

Each scan goes through flytomo's own path: Poisson counts with 10 flats and 10 darks →
:func:`recon.io.preprocess.line_integrals` → the noise its flats measure
(:func:`recon.io.noise.chunk_noise`) → :class:`recon.methods.Reconstructor`. Also scores the
best iteration (an oracle that knows the truth) to show what is left.

    .venv/bin/python bench/noise_stop.py --sizes 128,256 --photons 300,1000,3000,10000 \\
        --json bench/results/noise_stop.json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from recon.geometry import ScanGeometry
from recon.io.noise import checked, chunk_noise, line_integral_variance
from recon.io.preprocess import line_integrals
from recon.io.scan import RawChunk
from recon.methods import make_reconstructor
from recon.metrics import psnr
from recon.mlem import DEFAULT_ITERATIONS_FLYSCAN, MAX_ITERATIONS, mlem
from recon.operators import FlyScanProjector
from recon.phantoms import FAMILIES, VALIDATION_SEED0, make_phantom
from recon.simulate import FlyScanTransmission, counts_from_transmission


def case(size: int, photons: float, n_angles: int, per_family: int, seed: int) -> dict:
    g = ScanGeometry.create(np.arange(n_angles) * 180.0 / n_angles, size, blur_angle_deg=1.5, image_size=size)
    truth = np.stack([make_phantom(f, size, VALIDATION_SEED0 + 7 + i) for i in range(per_family)
                      for f in FAMILIES]).astype(np.float32)
    scan = counts_from_transmission(FlyScanTransmission(g, 8)(truth), g, photons, rng=np.random.default_rng(seed))
    chunk = RawChunk(scan.tomo, scan.flats, scan.darks)
    sino = line_integrals(chunk)
    noise = checked(chunk_noise(chunk), sino)  # as flytomo's reader does
    var = line_integral_variance(sino, noise)
    rec = make_reconstructor(g, "mlem-flyscan", iterations="auto")
    stopped: list[int] = []
    t0 = time.perf_counter()
    auto = rec(sino, var, stopped=stopped)
    t_auto = time.perf_counter() - t0
    fixed = make_reconstructor(g, "mlem-flyscan", iterations=DEFAULT_ITERATIONS_FLYSCAN)(sino)
    curve: list[list[float]] = []
    mlem(torch.from_numpy(sino), FlyScanProjector(g), MAX_ITERATIONS,
         callback=lambda k, x: curve.append([psnr(a, b) for a, b in zip(x.numpy(), truth)]))
    best = np.max(np.array(curve), axis=0)
    score = lambda vol: [psnr(a, b) for a, b in zip(vol, truth)]
    return {"size": size, "photons": photons, "photons_measured": float(np.nanmedian(noise.photons)),
            "auto": float(np.mean(score(auto))), "fixed": float(np.mean(score(fixed))),
            "best": float(np.mean(best)), "iterations": stopped, "best_iterations":
            [int(i) + 1 for i in np.argmax(np.array(curve), axis=0)], "seconds_auto": t_auto,
            "worst_vs_fixed": float(np.min(np.subtract(score(auto), score(fixed))))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--photons", default="300,1000,3000,10000")
    ap.add_argument("--angles", type=int, default=120)
    ap.add_argument("--per-family", type=int, default=1)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    print(f"| size | photons (measured) | fixed {DEFAULT_ITERATIONS_FLYSCAN} | auto | best (oracle) | auto - fixed "
          "(worst image) | iterations auto (oracle) |")
    print("|---|---|---|---|---|---|---|")
    for size in (int(s) for s in a.sizes.split(",")):
        for i0 in (float(p) for p in a.photons.split(",")):
            r = case(size, i0, a.angles, a.per_family, seed=1)
            rows.append(r)
            print(f"| {size} | {i0:g} ({r['photons_measured']:.0f}) | {r['fixed']:.2f} | {r['auto']:.2f} | "
                  f"{r['best']:.2f} | {r['auto'] - r['fixed']:+.2f} ({r['worst_vs_fixed']:+.2f}) | "
                  f"{'/'.join(map(str, r['iterations']))} ({'/'.join(map(str, r['best_iterations']))}) |", flush=True)
    gain = np.mean([r["auto"] - r["fixed"] for r in rows])
    print(f"mean auto - fixed: {gain:+.2f} dB over {len(rows)} cases")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"command": "bench/noise_stop.py", "args": vars(a), "rows": rows, "mean_gain_db": gain}, f,
                      indent=1)


if __name__ == "__main__":
    main()
