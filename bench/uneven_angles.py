"""Unevenly sampled scans: FBP with each projection weighted by the angles it covers.

A fly-scan stage seldom records a clean 180° in even steps: it runs on past the half turn,
repeats the end angle, accelerates and decelerates, or steps by the golden angle. One slice
of each of the four test families (256 px, phantom seed 12), fly-scanned at I0 2000 with
1.5° of blur per exposure, over each angle set below; reconstructed by FBP with
:func:`recon.fbp.angular_weights` ("weighted"), by FBP with every projection weighted
π / n_angles as before ("uniform"), and by modified MLEM (70 iterations, for reference);
PSNR and SSIM (``recon.metrics``) against the phantom, averaged over the families.

    .venv/bin/python bench/uneven_angles.py [--json bench/results/uneven_angles.json]
"""
from __future__ import annotations

import math

import numpy as np
import torch

from recon.fbp import angular_weights, filter_sinograms
from recon.geometry import ScanGeometry
from recon.methods import make_reconstructor
from recon.metrics import psnr, ssim
from recon.operators import Projector
from recon.phantoms import make_phantom
from recon.simulate import line_integrals_from_counts, simulate_flyscan
from benchio import run_and_save

SIZE, PHOTONS, BLUR = 256, 2000, 1.5
FAMILIES = ("heterogeneous", "cracked", "network", "radial")
ANGLE_SETS = {  # name: angles in degrees (exposure middles)
    "even half turn (120)": np.arange(120) * 1.5,
    "repeated end angle (121)": np.linspace(0.0, 180.0, 121),
    "a turn and a third (160)": np.arange(160) * 1.5,
    "three quarters of a turn (180)": np.arange(180) * 1.5,
    "full turn (240)": np.arange(240) * 1.5,
    "accelerating stage (120)": 180.0 * (0.5 - 0.5 * np.cos(np.pi * (np.arange(120) + 0.5) / 120)),
    "golden angle (120)": np.mod(np.arange(120) * 111.246117975, 360.0),
    "uniform-random angles (120)": np.sort(np.random.default_rng(8).uniform(0.0, 180.0, 120)),
    "short of a half turn: 0-118.5 (80)": np.arange(80) * 1.5,
}


def _uniform_fbp(sino: np.ndarray, g: ScanGeometry) -> np.ndarray:
    """FBP as it was: every projection weighted π / n_angles."""
    t = torch.as_tensor(sino, dtype=torch.float32)
    return (Projector(g).adjoint(filter_sinograms(t)) * (math.pi / g.n_angles)).numpy()


def _half_gap_fbp(sino: np.ndarray, g: ScanGeometry) -> np.ndarray:
    """FBP with the textbook weights: half the folded gap to each neighbour (``reach=1``)."""
    t = filter_sinograms(torch.as_tensor(sino, dtype=torch.float32))
    w = torch.as_tensor(angular_weights(g, reach=1), dtype=t.dtype)
    return Projector(g).adjoint(t * w[:, None]).numpy()


def run() -> dict:
    rows = []
    for name, angles in ANGLE_SETS.items():
        g = ScanGeometry.create(angles, SIZE, blur_angle_deg=BLUR)
        scores: dict[str, list[tuple[float, float]]] = {"weighted": [], "half_gap": [], "uniform": [],
                                                        "mlem-flyscan": []}
        for family in FAMILIES:
            obj = make_phantom(family, SIZE, seed=12)
            sino = np.asarray(line_integrals_from_counts(simulate_flyscan(obj, angles, BLUR, PHOTONS, seed=3)))
            for label, vol in (("weighted", make_reconstructor(g, "fbp")(sino)), ("half_gap", _half_gap_fbp(sino, g)),
                               ("uniform", _uniform_fbp(sino, g)),
                               ("mlem-flyscan", make_reconstructor(g, "mlem-flyscan")(sino))):
                scores[label].append((psnr(vol[0], obj), ssim(vol[0], obj)))
        row = {"angles": name, "n_angles": int(angles.size), "missing_wedge_deg": math.degrees(g.missing_wedge)}
        for label, s in scores.items():
            row[f"{label}_psnr"], row[f"{label}_ssim"] = (float(v) for v in np.mean(s, axis=0))
        rows.append(row)
        print(f"{name:>36}  FBP weighted {row['weighted_psnr']:6.2f} / {row['weighted_ssim']:.3f}   "
              f"half-gap {row['half_gap_psnr']:6.2f} / {row['half_gap_ssim']:.3f}   "
              f"uniform {row['uniform_psnr']:6.2f} / {row['uniform_ssim']:.3f}   "
              f"modified MLEM {row['mlem-flyscan_psnr']:6.2f} / {row['mlem-flyscan_ssim']:.3f}", flush=True)
    return {"settings": {"size": SIZE, "photons": PHOTONS, "blur_deg": BLUR, "families": FAMILIES,
                         "phantom_seed": 12}, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    return run_and_save(__doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
