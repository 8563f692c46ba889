"""A real particle's shape as ground truth: the beamline slice, re-simulated as a fly-scan.

The real slice (``../shared/data/seed-model/img_test.tiff``, an FBP image of a cathode
particle) has no ground truth and no raw scan. Here it becomes one: resized to ``--size``,
smoothed (Gaussian σ = 1 px, to drop the FBP noise it carries), clipped at 0, zeroed outside
the reconstruction disk and scaled like the phantoms (densest ray 2.0). That image is scanned
with the seed's Table-1 settings (120 projections over 180°, 1.5° blur, I0 photons), then
reconstructed by FBP and modified MLEM, and corrected by each network on its own input kind
(``--cross``: also on the other). A morphology none of the networks was trained on, cracks
included: the closest this repository gets to a real test.

Prints PSNR/SSIM against that image, and the PSNR of each output smoothed by the same σ = 1 px
as the reference ("PSNR σ1": sharper than the reference is not scored as error there), and
writes a PNG (reference, FBP, modified MLEM, each network) and JSON.

    .venv/bin/python bench/real_particle.py [--size 512] [--photons 2000]
        [--rrdb recon/weights/rrdb-mlem-flyscan.safetensors seed:] [--rrdb-method [OPTION=VALUE ...]]
        [--out docs/real_particle.png]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tifffile
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.ndimage import gaussian_filter
from skimage.transform import resize

from recon.geometry import ScanGeometry
from recon.methods import make_reconstructor
from recon.metrics import psnr, ssim
from recon.phantoms import densest_ray, support_mask
from recon.weights import load_model, seed_checkpoint_path


#: px, the Gaussian that smooths the real slice into the reference (and outputs for "PSNR σ1")
REFERENCE_SIGMA_PX = 1.0


def particle_truth(path: Path, size: int, max_line_integral: float = 2.0) -> np.ndarray:
    """(size, size) float32 attenuation per pixel: the real slice as a phantom (see module doc)."""
    img = tifffile.imread(path).astype(np.float32)
    img = resize(img, (size, size), anti_aliasing=True, preserve_range=True).astype(np.float32)
    img = np.clip(gaussian_filter(img, REFERENCE_SIGMA_PX), 0, None) * support_mask(size)
    return (img * (max_line_integral / densest_ray(img))).astype(np.float32)


def smoothed_psnr(image: np.ndarray, truth: np.ndarray, sigma: float = REFERENCE_SIGMA_PX) -> float:
    """PSNR dB of ``image`` (y, x) smoothed by a Gaussian of ``sigma`` px against ``truth``
    (y, x), which :func:`particle_truth` smoothed the same way."""
    return psnr(gaussian_filter(np.asarray(image, np.float32), sigma), truth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--angles", type=int, default=120)
    ap.add_argument("--blur", type=float, default=1.5)
    ap.add_argument("--photons", type=float, nargs="+", default=[2000.0])
    ap.add_argument("--n-sub", type=int, default=16)
    ap.add_argument("--rrdb", nargs="*", default=[None, "seed:"],
                    help="networks: PATH.safetensors or seed:[PATH] (default: shipped and seed's)")
    ap.add_argument("--rrdb-method", nargs="*", default=None, metavar="OPTION=VALUE",
                    help="also the rrdb method itself (no values: its defaults; e.g. blend=none)")
    ap.add_argument("--cross", action="store_true", help="also run each network on the other input kind")
    ap.add_argument("--out", default="docs/real_particle.png")
    ap.add_argument("--json", default="bench/results/real_particle.json")
    args = ap.parse_args()

    from quality import first_stage, network_inputs, rrdb_method_row, simulate  # bench/ is on the path when run as a script

    truth = particle_truth(seed_checkpoint_path().with_name("img_test.tiff"), args.size)[None]
    g = ScanGeometry.create(np.arange(args.angles) * (180.0 / args.angles), args.size,
                            blur_angle_deg=args.blur)
    sinos = simulate(truth, g, args.photons, seed=1, n_sub=args.n_sub)
    models = [load_model(m) for m in args.rrdb]
    out: dict = {"settings": vars(args), "results": []}
    print(f"{'I0':>7} {'method':>48} {'PSNR dB':>8} {'SSIM':>6} {'PSNR σ1':>8}")
    panels: list[tuple[str, np.ndarray]] = [("reference (real slice, smoothed)", truth[0])]
    for i0, sino in sinos.items():
        vols = {k: make_reconstructor(g, k)(sino) for k in ("fbp", "mlem-flyscan")}
        rows = [("FBP", vols["fbp"]), ("modified MLEM", vols["mlem-flyscan"])]
        if args.rrdb_method is not None:
            label, opts = rrdb_method_row(args.rrdb_method)
            rows.append((label, make_reconstructor(g, "rrdb", **opts)(sino)))
        for m in models:
            rows += [(f"RRDB {m.label} on {k}", m.apply(first_stage(vols, k))) for k in network_inputs(m, args.cross)]
        for label, vol in rows:
            p, s, p1 = psnr(vol[0], truth[0]), ssim(vol[0], truth[0]), smoothed_psnr(vol[0], truth[0])
            print(f"{i0:>7g} {label:>48} {p:>8.2f} {s:>6.3f} {p1:>8.2f}")
            out["results"].append({"photons": i0, "method": label, "psnr": p, "ssim": s, "psnr_smoothed": p1})
            if i0 == args.photons[0]:
                panels.append((f"{label}\n{p:.2f} dB / SSIM {s:.3f} / smoothed {p1:.2f} dB", vol[0]))
    lo, hi = 0.0, float(np.percentile(truth, 99.8))
    cols = min(3, len(panels))
    rows_n = -(-len(panels) // cols)
    fig = Figure(figsize=(4.6 * cols, 5.0 * rows_n), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for i, (label, a) in enumerate(panels):
        ax = fig.add_subplot(rows_n, cols, i + 1)
        ax.imshow(a, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(label, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"real particle re-simulated: {args.angles} projections, {args.blur}° blur, "
                 f"I0 {args.photons[0]:g}; same grey scale")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}, {args.json}")


if __name__ == "__main__":
    main()
