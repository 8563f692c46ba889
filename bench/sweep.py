"""Robustness sweep (the seed's Fig. 3k–n): PSNR and SSIM of FBP, modified MLEM and the RRDB
network over projection counts × photon counts, averaged over N test images per cell.

The network runs on its own input kind (its model card): on the modified-MLEM or the FBP
image of the same cell, computed once.

Writes a table (stdout), JSON and heat-map PNGs (PSNR and SSIM, one panel per method).
Each finished cell is kept in OUT/cells/ (per-image values): killed and run again with the
same settings, the sweep goes on from the first missing cell; other settings start afresh.

    .venv/bin/python bench/sweep.py [--size 256] [--per-cell 2] [--model PATH|seed:PATH]
        [--blend PATH [--blend-weight 0.3]] [--out bench/results/sweep]   # documented: --per-cell 50
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recon.geometry import ScanGeometry
from recon.io._atomic import atomic_path
from recon.methods import BLEND_WEIGHT, blend_outputs, make_reconstructor
from recon.metrics import psnr, ssim
from recon.phantoms import test_images
from recon.simulate import FlyScanTransmission, counts_from_transmission, line_integrals_from_counts
from recon.weights import load_model

PROJECTIONS = (60, 90, 120, 180, 360)
PHOTONS = (500.0, 1000.0, 2000.0, 5000.0, 10000.0)
BLENDED = "RRDB + second network"


def heat_maps(results: dict, metric: str, path: Path) -> None:
    methods = list(results)
    lo = min(float(np.min(results[m][metric])) for m in methods)  # one colour scale for all panels
    hi = max(float(np.max(results[m][metric])) for m in methods)
    fig = Figure(figsize=(5.2 * len(methods), 4.4), dpi=100)
    FigureCanvasAgg(fig)
    for i, m in enumerate(methods):
        a = np.array(results[m][metric])
        ax = fig.add_subplot(1, len(methods), i + 1)
        im = ax.imshow(a, origin="lower", cmap="viridis", aspect="auto", vmin=lo, vmax=hi)
        for (r, c), v in np.ndenumerate(a):
            ax.text(c, r, f"{v:.2f}" if metric == "ssim" else f"{v:.1f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(PHOTONS)), [f"{p:g}" for p in PHOTONS])
        ax.set_yticks(range(len(PROJECTIONS)), [str(p) for p in PROJECTIONS])
        ax.set_xlabel("photons per pixel per frame (I0)")
        ax.set_ylabel("projections over 180°")
        ax.set_title(f"{m}: {metric.upper()}")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path)


def _load_cell(path: Path, key: dict) -> dict | None:
    """A finished cell's per-image values if ``path`` holds one made with these settings."""
    try:
        cell = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cell if cell.get("key") == key else None


def _input(vols: dict, model) -> np.ndarray:
    return vols["FBP" if model.input_kind == "fbp" else "modified MLEM"]


def _run_cell(t: np.ndarray, g: ScanGeometry, i0: float, seed: int, first: dict, model, truth: np.ndarray,
              blend: tuple | None = None) -> dict:
    """Per-image PSNR and SSIM of FBP, modified MLEM and the network at one photon count (and,
    with ``blend`` = (second network, weight), the rrdb method's mean of the two).

    ``t``: noise-free transmission (images, angles, columns); ``truth``: (images, n, n)."""
    sino = line_integrals_from_counts(counts_from_transmission(t, g, i0, rng=np.random.default_rng(seed)))
    vols = {name: rec(sino) for name, rec in first.items()}
    vols["RRDB"] = model.apply(_input(vols, model))
    if blend is not None:
        vols[BLENDED] = blend_outputs(vols["RRDB"], blend[0].apply(_input(vols, blend[0])), blend[1])
    return {name: {"psnr": [psnr(v, x) for v, x in zip(vol, truth)],
                   "ssim": [ssim(v, x) for v, x in zip(vol, truth)]} for name, vol in vols.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--per-cell", type=int, default=2, help="test images per cell (≥ 1)")
    ap.add_argument("--blur", type=float, default=1.5)
    ap.add_argument("--model", default=None, help="RRDB model (default: the shipped one)")
    ap.add_argument("--blend", default=None, metavar="PATH",
                    help="also the rrdb method's mean of the model and this second network (e.g. "
                         "recon/weights/rrdb-fbp-blend.safetensors, the default's)")
    ap.add_argument("--blend-weight", type=float, default=BLEND_WEIGHT)
    ap.add_argument("--out", default="bench/results/sweep")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.per_cell < 1:
        ap.error("--per-cell must be ≥ 1")
    k = -(-args.per_cell // 4)
    imgs = test_images(args.size, n_per_family=k)  # k per family, family by family
    interleaved = [imgs[f * k + i][1] for i in range(k) for f in range(len(imgs) // k)]
    truth = np.stack(interleaved[: args.per_cell])  # every family represented
    shape = (len(PROJECTIONS), len(PHOTONS))
    model = load_model(args.model)
    second = load_model(args.blend) if args.blend else None
    blend = (second, args.blend_weight) if second else None
    names = ("FBP", "modified MLEM", "RRDB") + ((BLENDED,) if blend else ())
    key = {"size": args.size, "per_cell": args.per_cell, "blur": args.blur,
           "model": str(model.path),
           "model_sha256": model.card.get("weights_sha256"), "model_input": model.input_kind}
    if blend:
        key["blend"] = {"sha256": second.card.get("weights_sha256"), "weight": args.blend_weight}
    cells = out / "cells"
    cells.mkdir(exist_ok=True)
    results = {m: {"psnr": np.zeros(shape).tolist(), "ssim": np.zeros(shape).tolist(),
                   "psnr_sd": np.zeros(shape).tolist()} for m in names}
    print(f"RRDB: {model.path.name} on {model.input_kind} input")
    print(f"{'proj':>5} {'I0':>7} " + " ".join(f"{m + ' dB/SSIM':>22}" for m in names))
    for i, n_proj in enumerate(PROJECTIONS):
        g = ScanGeometry.create(np.arange(n_proj) * 180.0 / n_proj, args.size, blur_angle_deg=args.blur)
        t = first = None
        for j, i0 in enumerate(PHOTONS):
            path = cells / f"p{n_proj}_i{i0:g}.json"
            cell = _load_cell(path, key)
            if cell is None:
                if t is None:  # the noise-free scan of this projection count, once
                    t = FlyScanTransmission(g, 8)(truth)
                    first = {"FBP": make_reconstructor(g, "fbp"), "modified MLEM": make_reconstructor(g, "mlem-flyscan")}
                cell = _run_cell(t, g, i0, i * 10 + j, first, model, truth, blend)
                with atomic_path(path, overwrite=True) as tmp:
                    tmp.write_text(json.dumps({"key": key, **cell}))
            row = []
            for name in names:
                p, s = cell[name]["psnr"], cell[name]["ssim"]
                results[name]["psnr"][i][j], results[name]["ssim"][i][j] = float(np.mean(p)), float(np.mean(s))
                results[name]["psnr_sd"][i][j] = float(np.std(p))
                row.append(f"{np.mean(p):>14.2f} / {np.mean(s):.3f}")
            print(f"{n_proj:>5} {i0:>7g} " + " ".join(row), flush=True)
    for metric in ("psnr", "ssim"):
        heat_maps(results, metric, out / f"sweep_{metric}.png")
    (out / "sweep.json").write_text(json.dumps({"settings": vars(args), "model": str(model.path),
                                                "model_input": model.input_kind, "projections": PROJECTIONS,
                                                "photons": PHOTONS, "results": results}, indent=1))
    print(f"wrote {out}/sweep.json, sweep_psnr.png, sweep_ssim.png")


if __name__ == "__main__":
    main()
