"""Speed of the operators and methods, against astra-toolbox's CPU MLEM in the same run.

Prints a table and writes JSON (``--json``). Time per slice-iteration of MLEM with R
(naive), with R̄ = R·B (modified) and with the seed's sum over n sub-angles, for each size
and batch; ASTRA's CPU MLEM (its 'linear' projector through OpTomo, one slice at a time)
as the anchor; FBP of 64 slices. Ratios matter, not absolute times (shared machine).

    .venv/bin/python bench/operators.py [--quick] [--json bench/operators.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from recon.fbp import fbp
from recon.geometry import ScanGeometry
from recon.mlem import mlem
from recon.operators import FlyScanProjector, Projector, SubAngleProjector
from recon.phantoms import make_phantom


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def astra_mlem_seconds(sino: np.ndarray, g: ScanGeometry, iterations: int) -> float | None:
    try:
        import astra
    except ImportError:
        return None
    n = g.image_size
    proj = astra.create_projector("linear", astra.create_proj_geom("parallel", 1.0, g.n_columns, g.angles),
                                  astra.create_vol_geom(n, n))
    op = astra.OpTomo(proj)
    y = sino[0].ravel().astype(np.float32)
    t = time.perf_counter()
    sens = op.T * np.ones_like(y)
    x = np.ones(n * n, np.float32)
    for _ in range(iterations):
        ax = op * x
        x = x * (op.T * np.where(ax > 1e-6, y / np.maximum(ax, 1e-6), 0)) / np.maximum(sens, 1e-6)
    seconds = (time.perf_counter() - t) / iterations
    astra.projector.delete(proj)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only (CI smoke run)")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--n-sub", type=int, default=8, help="sub-angles of the seed's operator")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    cases = [(64, 60, (1, 8))] if args.quick else [(256, 180, (1, 8, 64)), (512, 120, (1, 8, 64))]
    rows = []
    for n, n_angles, batches in cases:
        g = ScanGeometry.create(np.linspace(0, 180, n_angles, endpoint=False), n, blur_angle_deg=1.5)
        t = time.perf_counter()
        ops = {"mlem": Projector(g), "mlem-flyscan": FlyScanProjector(g)}
        build = time.perf_counter() - t
        if n <= 256:
            ops[f"mlem-subangle{args.n_sub}"] = SubAngleProjector(g, args.n_sub, max_cached_bytes=int(8e9))
        img = make_phantom("cracked", n, 1)
        for b in batches:
            sino = ops["mlem"].forward(torch.from_numpy(np.repeat(img[None], b, 0)))
            row = {"size": n, "angles": n_angles, "batch": b, "build_s": round(build, 2)}
            for name, op in ops.items():
                sec = best_of(lambda: mlem(sino, op, args.iterations), 2)
                row[name] = sec / (args.iterations * b) * 1e3  # ms per slice-iteration
            if b == 1:
                astra_s = astra_mlem_seconds(sino.numpy(), g, args.iterations)
                row["astra_cpu"] = None if astra_s is None else astra_s * 1e3
            if b == max(batches):
                row["fbp_batch_s"] = best_of(lambda: fbp(sino, ops["mlem"]), 2)
            rows.append(row)
    astra_ms = {r["size"]: r["astra_cpu"] for r in rows if r.get("astra_cpu")}
    print(f"{'size':>5} {'angles':>6} {'batch':>5} {'naive ms':>9} {'fly ms':>8} {'fly/naive':>9} "
          f"{'sub/naive':>9} {'astra ms':>9} {'astra/naive':>11} {'fbp s':>6}")
    for r in rows:
        sub = next((v for k, v in r.items() if k.startswith("mlem-subangle")), None)
        a = astra_ms.get(r["size"])
        r["fly_over_naive"] = r["mlem-flyscan"] / r["mlem"]
        r["astra_over_naive"] = None if a is None else a / r["mlem"]
        print(f"{r['size']:>5} {r['angles']:>6} {r['batch']:>5} {r['mlem']:>9.2f} {r['mlem-flyscan']:>8.2f} "
              f"{r['fly_over_naive']:>9.2f} {('%.2f' % (sub / r['mlem'])) if sub else '-':>9} "
              f"{('%.1f' % a) if a else '-':>9} {('%.1f' % r['astra_over_naive']) if a else '-':>11} "
              f"{('%.2f' % r['fbp_batch_s']) if 'fbp_batch_s' in r else '-':>6}")
    if args.json:
        meta = {"machine": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
