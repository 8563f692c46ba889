"""How close the fast fly-scan operator R̄ = R·B comes to the seed's sub-angle operator.

Relative sinogram difference ‖R̄x − R_n x‖ / ‖R_n x‖ on the 1-px grid-line image (seed Fig. 1b)
for n = 1 … 32 sub-angles, against the step-scan projector R; also the non-zeros of B and R.

    .venv/bin/python bench/flyscan_operator.py [--sizes 64 128 256] [--json FILE]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from recon.geometry import ScanGeometry
from recon.operators import FlyScanProjector, Projector, SubAngleProjector
from recon.phantoms import grid_lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--angles", type=int, default=120)
    ap.add_argument("--blur", type=float, default=1.5)
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    print(f"{'size':>5} {'n_sub':>5} {'R̄ vs R_n':>9} {'R vs R_n':>9} {'nnz B/R':>8}")
    for n in args.sizes:
        g = ScanGeometry.create(np.arange(args.angles) * 180.0 / args.angles, n, blur_angle_deg=args.blur)
        x = torch.from_numpy(grid_lines(n).astype(np.float64))
        fast_op = FlyScanProjector(g, dtype=torch.float64)
        fast, step = fast_op.forward(x), Projector(g, dtype=torch.float64).forward(x)
        ratio = fast_op.blur.nnz / sum(b[0].values().numel() for b in fast_op._blocks)
        for n_sub in (1, 4, 8, 16, 32):
            ref = SubAngleProjector(g, n_sub, dtype=torch.float64, max_cached_bytes=int(2e9)).forward(x)
            r = {"size": n, "n_sub": n_sub, "fast_rel": float((fast - ref).norm() / ref.norm()),
                 "step_rel": float((step - ref).norm() / ref.norm()), "nnz_ratio": ratio}
            rows.append(r)
            print(f"{n:>5} {n_sub:>5} {100 * r['fast_rel']:>8.2f}% {100 * r['step_rel']:>8.2f}% {ratio:>8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
