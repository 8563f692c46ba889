"""Reconstruction quality on the seed paper's Table-1 protocol (PSNR/SSIM, mean ± sd).

512×512 test images (5 per phantom family, fixed test seeds), 120 projections over 180°,
blur 1.5°, I0 = 2000 photons per pixel per frame, dark 100; FBP, MLEM (R), modified MLEM (R̄)
and, where a model is given, the RRDB network. A photon sweep repeats it at other I0.
A yardstick row (I0 0) scores the truth itself blurred by a Gaussian of ``--reference-blur`` px:
how sharp a reconstruction must be to reach a given PSNR on these phantoms.
``--validation`` instead prints PSNR against iterations on validation images (the seeds
the default iteration count is chosen on; never the test images).

    .venv/bin/python bench/quality.py [--size 512] [--per-family 5] [--photons 500 2000 10000 30000]
        [--rrdb PATH|seed:PATH ...] [--rrdb-method [OPTION=VALUE ...]] [--cross] [--self-ensemble] [--amp]
        [--json bench/quality.json] [--validation]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from recon.geometry import ScanGeometry
from recon.methods import RRDB_INPUTS, make_reconstructor
from recon.metrics import psnr, ssim
from recon.mlem import mlem
from recon.operators import FlyScanProjector, Projector
from recon.phantoms import FAMILIES, VALIDATION_SEED0, make_phantom, test_images
from recon.simulate import FlyScanTransmission, counts_from_transmission, line_integrals_from_counts
from recon.weights import channel_kinds, load_model


def images(size: int, per_family: int, validation: bool) -> list[tuple[str, np.ndarray]]:
    if not validation:
        return test_images(size, n_per_family=per_family)
    return [(f, make_phantom(f, size, VALIDATION_SEED0 + i)) for f in FAMILIES for i in range(per_family)]


def simulate(truth: np.ndarray, g: ScanGeometry, photons: list[float], seed: int, n_sub: int) -> dict:
    """Line integrals (z, angles, columns) per photon count; one noise-free transmission."""
    t = FlyScanTransmission(g, n_sub)(truth)
    return {i0: line_integrals_from_counts(counts_from_transmission(t, g, i0, rng=np.random.default_rng(seed)))
            for i0 in photons}


def scores(vol: np.ndarray, truth: np.ndarray) -> tuple[list[float], list[float]]:
    return [psnr(v, t) for v, t in zip(vol, truth)], [ssim(v, t) for v, t in zip(vol, truth)]


def iteration_curves(sino: np.ndarray, truth: np.ndarray, g: ScanGeometry, iterations: int) -> dict:
    curves = {}
    for name, op in (("mlem", Projector(g)), ("mlem-flyscan", FlyScanProjector(g))):
        c: list[float] = []
        mlem(torch.from_numpy(sino), op, iterations,
             callback=lambda k, x: c.append(float(np.mean([psnr(a, b) for a, b in zip(x.numpy(), truth)]))))
        curves[name] = c
    return curves


def family_means(values: list[float], imgs: list[tuple[str, np.ndarray]]) -> dict[str, float]:
    """Mean of per-image ``values`` for each phantom family of ``imgs`` ((family, image) pairs)."""
    return {f: float(np.mean([v for v, (ff, _) in zip(values, imgs) if ff == f])) for f in FAMILIES}


def rrdb_method_row(given: list[str]) -> tuple[str, dict]:
    """``--rrdb-method`` values (OPTION=VALUE, e.g. blend=PATH blend_weight=0.3 self_ensemble=true) → a row label
    and the options for ``make_reconstructor(g, "rrdb", **options)``."""
    opts: dict = dict(kv.split("=", 1) for kv in given)
    if "blend_weight" in opts:
        opts["blend_weight"] = float(opts["blend_weight"])
    for flag in ("self_ensemble", "amp"):
        if flag in opts:
            opts[flag] = opts[flag].lower() in ("1", "true", "yes")
    return "rrdb method" + (f" ({', '.join(given)})" if given else " (defaults)"), opts


def network_inputs(model, cross: bool) -> list[str]:
    """The first-stage kinds a network is run on: its card's input kind, then (``cross``) the
    others with as many channels."""
    same = len(channel_kinds(model.input_kind))
    return [model.input_kind] + [k for k in RRDB_INPUTS if cross and k != model.input_kind
                                 and len(channel_kinds(k)) == same]


def first_stage(vols: dict[str, np.ndarray], kind: str) -> np.ndarray:
    """The network input of ``kind`` from the first-stage volumes ``vols`` (kind → (z, y, x)):
    that volume, or for a multi-channel kind its channels stacked (z, C, y, x)."""
    kinds = channel_kinds(kind)
    return vols[kind] if len(kinds) == 1 else np.stack([vols[k] for k in kinds], axis=1)


def report(out: dict, i0: float, label: str, vol: np.ndarray, truth: np.ndarray, imgs: list) -> None:
    """Print one row (mean ± sd PSNR and SSIM) and add it, with per-family means, to ``out``."""
    p, s = scores(vol, truth)
    fam = {f: round(v, 2) for f, v in family_means(p, imgs).items()}
    fam_s = {f: round(v, 3) for f, v in family_means(s, imgs).items()}
    print(f"{i0:>7g} {label:>44} {np.mean(p):>7.2f} ± {np.std(p):<4.2f} {np.mean(s):>7.3f} ± {np.std(s):<5.3f}", flush=True)
    out["results"].append({"photons": i0, "method": label, "psnr_mean": float(np.mean(p)),
                           "psnr_sd": float(np.std(p)), "ssim_mean": float(np.mean(s)),
                           "ssim_sd": float(np.std(s)), "psnr_by_family": fam, "ssim_by_family": fam_s})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--angles", type=int, default=120)
    ap.add_argument("--blur", type=float, default=1.5)
    ap.add_argument("--per-family", type=int, default=5)
    ap.add_argument("--photons", type=float, nargs="+", default=[2000.0, 500.0, 10000.0, 30000.0])
    ap.add_argument("--iterations", type=int, help="MLEM iterations (default: each method's default in recon.methods)")
    ap.add_argument("--n-sub", type=int, default=16, help="sub-angles of the simulated exposure")
    ap.add_argument("--rrdb", nargs="*", default=[], help="models for rows 'RRDB': PATH.safetensors or seed:PATH, "
                    "each applied to the first-stage volume of its card's input kind")
    ap.add_argument("--rrdb-method", nargs="*", default=None, metavar="OPTION=VALUE",
                    help="also a row of the rrdb method itself (recon.methods, as `flytomo recon --method rrdb`): "
                         "no values = its defaults, e.g. blend=PATH blend_weight=0.3")
    ap.add_argument("--cross", action="store_true", help="also apply each model to the other input kind")
    ap.add_argument("--amp", action="store_true", help="also each network in mixed precision (bfloat16 on the CPU)")
    ap.add_argument("--self-ensemble", action="store_true",
                    help="also a row of each model averaged over the 8 rotations/flips of each slice")
    ap.add_argument("--reference-blur", type=float, nargs="*", default=[1.0], metavar="SIGMA",
                    help="yardstick rows: the truth itself blurred by a Gaussian of SIGMA px (no scan, no noise)")
    ap.add_argument("--validation", action="store_true", help="PSNR against iterations on validation images")
    ap.add_argument("--max-iterations", type=int, default=150)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    imgs = images(args.size, args.per_family, args.validation)
    truth = np.stack([im for _, im in imgs])
    angles = np.arange(args.angles) * (180.0 / args.angles)
    g = ScanGeometry.create(angles, args.size, blur_angle_deg=args.blur)
    sinos = simulate(truth, g, args.photons, seed=1, n_sub=args.n_sub)
    print(f"simulated {len(imgs)} images at {len(args.photons)} photon levels in {time.perf_counter() - t0:.0f} s")
    out: dict = {"settings": vars(args), "results": []}
    if args.validation:
        for i0, sino in sinos.items():
            curves = iteration_curves(sino, truth, g, args.max_iterations)
            for name, c in curves.items():
                best = int(np.argmax(c)) + 1
                marks = ", ".join(f"{k}:{c[k - 1]:.2f}" for k in (10, 20, 30, 50, 100, 150) if k <= len(c))
                print(f"I0={i0:>7g} {name:>13}: best {max(c):.2f} dB at {best} it; {marks}")
                out["results"].append({"photons": i0, "method": name, "psnr_by_iteration": c})
    else:
        methods = [("FBP", "fbp", {}), ("MLEM", "mlem", {"iterations": args.iterations}),
                   ("modified MLEM", "mlem-flyscan", {"iterations": args.iterations})]
        models = [load_model(m) for m in args.rrdb]
        print(f"{'I0':>7} {'method':>44} {'PSNR dB':>14} {'SSIM':>14}")
        for sigma in args.reference_blur:  # how sharp a reconstruction must be to score a PSNR
            report(out, 0.0, f"truth blurred by a {sigma:g}-px Gaussian", gaussian_filter(truth, (0, sigma, sigma)), truth, imgs)
        for i0, sino in sinos.items():
            vols = {}
            for label, method, opts in methods:
                vols[method] = make_reconstructor(g, method, **{k: v for k, v in opts.items() if v is not None})(sino)
                report(out, i0, label, vols[method], truth, imgs)
            if args.rrdb_method is not None:
                label, opts = rrdb_method_row(args.rrdb_method)
                report(out, i0, label, make_reconstructor(g, "rrdb", **opts)(sino), truth, imgs)
            for m in models:  # each network on the first-stage volume it was trained on (and, with --cross, the other)
                for kind in network_inputs(m, args.cross):
                    note = "" if kind == m.input_kind else ", not its training input"
                    label = f"RRDB {m.label} on {kind}{note}"
                    report(out, i0, label, m.apply(first_stage(vols, kind)), truth, imgs)
                    if args.self_ensemble:
                        report(out, i0, f"{label}, 8-fold self-ensemble",
                               m.apply(first_stage(vols, kind), self_ensemble=True), truth, imgs)
                    if args.amp:
                        report(out, i0, f"{label}, amp", m.apply(first_stage(vols, kind), amp=True), truth, imgs)
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
