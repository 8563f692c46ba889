"""Does a correction network keep thin cracks? A fast 2D check (about 10 s per model).

Slices through the synthetic heating particle (``recon.phantoms.heating_particle``, fully
cracked: 1-px cracks near the centre, 2–3 px at the surface) are fly-scanned like the
``flytomo simulate-experiment`` default (1.5·n projections, 1.5° blur, I0 5000), reconstructed
by modified MLEM, and corrected by each model. For every image the **crack deficit** is

    Σ over crack pixels and their 1-px rim inside the particle of clip((solid − v) / solid, 0, 1)

— the partial-volume amount of crack the image shows, the quantity the crack analysis
measures — and the table gives its ratio to the truth's. 1 keeps the cracks; below 1 the
image greys them (the crack fraction will be underestimated), above 1 it darkens more than
the cracks (overestimated). On the 6-scan crack gate (``tests/hpc/test_shipped_model_cracks.py``)
models at 0.86–0.95 underestimate by 0.9–1.3 points. PSNR is over the whole slice.

    .venv/bin/python bench/crack_contrast.py [--size 64] MODEL ... [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_dilation

from recon.errors import FlytomoError
from recon.geometry import ScanGeometry
from recon.infer import apply_model
from recon.methods import reconstruct
from recon.metrics import psnr
from recon.phantoms import heating_particle, particle_mask
from recon.simulate import line_integrals_from_counts, simulate_flyscan
from recon.weights import channel_kinds, load_model

from hpc.experiment_sim import SimSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import first_stage  # noqa: E402 - a sibling bench script


def crack_slices(size: int, seeds: range = range(3)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, crack mask, particle mask), each (k, size, size): every size/16-th slice of the
    middle half of fully cracked heating particles, one per seed."""
    truths, cracks, envelopes = [], [], []
    for seed in seeds:
        vol, crack = heating_particle(size, 1.0, seed)
        env = particle_mask(size, seed)
        zs = range(size // 4, 3 * size // 4, max(1, size // 16))
        truths += [vol[z] for z in zs]
        cracks += [crack[z] for z in zs]
        envelopes += [env[z] for z in zs]
    return np.stack(truths), np.stack(cracks), np.stack(envelopes)


def crack_deficit(images: np.ndarray, cracks: np.ndarray, envelope: np.ndarray, solid: float) -> float:
    """Σ clip((solid − v)/solid, 0, 1) over crack pixels and their 1-px rim inside the envelope."""
    near = np.stack([binary_dilation(c, iterations=1) for c in cracks]) & envelope
    return float(np.clip((solid - images[near]) / solid, 0, 1).sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model paths (flytomo models on mlem-flyscan input, or mlem-flyscan+fbp)")
    default = SimSettings()  # scanned as `flytomo simulate-experiment` scans
    ap.add_argument("--size", type=int, default=default.size)
    ap.add_argument("--photons", type=float, default=default.i0)
    ap.add_argument("--blur", type=float, default=default.blur_angle_deg)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:  # a bad model is refused before the scans are simulated
        models = [(str(spec), load_model(spec)) for spec in args.models]
        for spec, loaded in models:
            if channel_kinds(loaded.input_kind)[0] != "mlem-flyscan":
                raise FlytomoError(spec, f"corrects {loaded.input_kind!r}; this bench compares models on "
                                         "modified MLEM (alone or with FBP)")
    except FlytomoError as err:
        print(f"crack_contrast: error: {err}", file=sys.stderr)
        return 2

    truth, cracks, envelope = crack_slices(args.size)
    sim = SimSettings(size=args.size, i0=args.photons, blur_angle_deg=args.blur)
    angles = sim.angles_deg()
    n_angles = angles.size
    scan = simulate_flyscan(truth, angles, sim.blur_angle_deg, sim.i0, dark=sim.dark, n_sub=sim.n_sub, seed=1)
    geometry = ScanGeometry.create(angles, args.size, blur_angle_deg=args.blur)
    sino = line_integrals_from_counts(scan)
    first = {k: reconstruct(sino, geometry, k) for k in ("mlem-flyscan", "fbp")}
    mlem = first["mlem-flyscan"]
    solid = float(np.median(truth[truth > 0]))
    reference = crack_deficit(truth, cracks, envelope, solid)

    rows = [{"method": "modified MLEM", "deficit_ratio": crack_deficit(mlem, cracks, envelope, solid) / reference,
             "psnr": float(np.mean([psnr(m, t) for m, t in zip(mlem, truth)]))}]
    for name, loaded in models:
        out = apply_model(loaded.model, first_stage(first, loaded.input_kind),
                          normalization=loaded.card["normalization"])
        rows.append({"method": name, "deficit_ratio": crack_deficit(out, cracks, envelope, solid) / reference,
                     "psnr": float(np.mean([psnr(o, t) for o, t in zip(out, truth)]))})
    print(f"{len(truth)} slices of {args.size}², {int(cracks.sum())} crack pixels, {n_angles} projections, "
          f"{args.blur}° blur, I0 {args.photons:g}")
    print(f"{'method':60s} {'crack deficit / truth':>22s} {'PSNR dB':>8s}")
    for r in rows:
        print(f"{r['method'][-60:]:60s} {r['deficit_ratio']:22.3f} {r['psnr']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
