"""Projectors too large to keep: one application of R and of Rᵀ, stored, traced, rebuilt and sampled.

For each case (slice size n, angles, slices B) on ``--device``: seconds for one forward and
one adjoint of the Joseph projector held as a sparse matrix (only where it fits
``--cache-gb``), traced by compiled loops (numba: the CPU's way when it does not fit),
rebuilt from its angle blocks at that use (the CPU's way without numba), and sampled with
grid_sample (the GPU's way); the build time of the stored one and the largest difference
between the ways. Ratios matter, not absolute times (shared machine).

    .venv/bin/python bench/large_projector.py [--device cuda] [--cases 512x360x8 1024x720x4] [--json F]
"""
from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from benchio import save_json
from recon.geometry import ScanGeometry
from recon.operators import OperatorCostWarning, Projector


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _seconds(fn, device: torch.device) -> tuple[float, torch.Tensor]:
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t, out


def one_case(n: int, n_angles: int, batch: int, device: torch.device, cache_bytes: float,
             ways: list[str]) -> dict:
    g = ScanGeometry.create(np.linspace(0, 180, n_angles, endpoint=False), n)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n * n, batch, generator=gen).to(device)
    y = torch.rand(n_angles * n, batch, generator=gen).to(device)
    row: dict = {"size": n, "angles": n_angles, "batch": batch, "device": device.type}
    results = {}
    if 2 * n_angles * n * 2 * n * 8 > cache_bytes:  # as Projector estimates it, float32
        ways = [w for w in ways if w != "stored"]
    for way in ways:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OperatorCostWarning)
            t = time.perf_counter()
            p = Projector(g, device, max_cached_bytes=int(cache_bytes) if way == "stored" else 1,
                          uncached=None if way == "stored" else way)
            build = time.perf_counter() - t
        p.forward_columns(x[:, :1])  # warm-up (kernels compiled, threads) on one slice
        p.adjoint_columns(y[:, :1])
        tf, fx = _seconds(lambda: p.forward_columns(x), device)
        ta, aty = _seconds(lambda: p.adjoint_columns(y), device)
        row[f"{way}_forward_s"], row[f"{way}_adjoint_s"] = round(tf, 3), round(ta, 3)
        if way == "stored":
            row["stored_build_s"] = round(build, 2)
        results[way] = (fx.cpu(), aty.cpu())
        del p
    ref = results[ways[0]]
    for way in ways[1:]:
        f, a = results[way]
        row[f"{way}_max_rel_diff"] = float(max((f - ref[0]).abs().max() / ref[0].abs().max(),
                                               (a - ref[1]).abs().max() / ref[1].abs().max()))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", nargs="+", default=["512x360x8", "1024x720x4"], help="NxANGLESxSLICES")
    ap.add_argument("--cache-gb", type=float, default=4.0, help="store the projector only below this")
    ap.add_argument("--ways", nargs="+", default=["stored", "traced", "rebuilt", "sampled"],
                    choices=["stored", "traced", "rebuilt", "sampled"], help="stored only where it fits --cache-gb")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    device = torch.device(args.device)
    rows = []
    print(f"{'n':>5} {'angles':>6} {'B':>3} {'stored f/a s':>13} {'traced f/a s':>13} {'rebuilt f/a s':>14} "
          f"{'sampled f/a s':>14} {'max diff':>9}")
    for case in args.cases:
        n, n_angles, batch = (int(v) for v in case.split("x"))
        r = one_case(n, n_angles, batch, device, args.cache_gb * 1e9, args.ways)
        rows.append(r)

        def pair(way: str) -> str:
            return f"{r[way + '_forward_s']:.2f}/{r[way + '_adjoint_s']:.2f}" if way + "_forward_s" in r else "-"
        diff = max((v for k, v in r.items() if k.endswith("max_rel_diff")), default=0.0)
        print(f"{n:>5} {n_angles:>6} {batch:>3} {pair('stored'):>13} {pair('traced'):>13} {pair('rebuilt'):>14} "
              f"{pair('sampled'):>14} "
              f"{diff:>9.1e}", flush=True)
    meta = {"machine": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor()}
    if args.json:
        save_json(Path(args.json), {"meta": meta, "rows": rows})


if __name__ == "__main__":
    main()
