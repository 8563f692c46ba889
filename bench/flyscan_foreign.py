"""Modified MLEM's two fly-scan operators on fly-scans made elsewhere (astra-toolbox).

Each exposure is astra's 'linear' (Joseph) projection averaged over 21 sub-angles across the
blur (a continuous rotation, blur = the angle step); Poisson noise at I0; phantoms: skimage's
Shepp-Logan and a cracked disc (attenuation 0.02-0.05 per px). Reconstructed with ``mlem``, and
``mlem-flyscan`` with the fast operator R·B and with ``operator="subangle"``, each at the same
iterations; PSNR inside the inscribed disk against the phantom, and seconds per slice.

    .venv/bin/python bench/flyscan_foreign.py [--sizes 64 128 256] [--photons 2000 20000]
        [--angles 120] [--iterations 70] [--json bench/results/flyscan_foreign.json]
"""
from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np


def _phantoms(n: int) -> dict[str, np.ndarray]:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    disc = ((x ** 2 + y ** 2) < (0.35 * n) ** 2) * 0.04
    disc[(np.abs(x - 0.5 * y) < 0.012 * n + 0.5) & (y > 0) & (x ** 2 + y ** 2 < (0.3 * n) ** 2)] = 0
    disc[(np.abs(y + 0.2 * n - 0.3 * x) < 0.008 * n + 0.4) & (x ** 2 + y ** 2 < (0.3 * n) ** 2)] = 0
    return {"shepp-logan": resize(shepp_logan_phantom(), (n, n), anti_aliasing=True) * 0.05,
            "cracked disc": disc.astype(np.float64)}


def _astra_flyscan(img: np.ndarray, angles: np.ndarray, blur: float, n_sub: int = 21) -> np.ndarray:
    import astra

    n = img.shape[0]
    vol = astra.create_vol_geom(n, n)
    out = np.zeros((angles.size, n))
    for d in blur * ((np.arange(n_sub) + 0.5) / n_sub - 0.5):
        pid = astra.create_projector("linear", astra.create_proj_geom("parallel", 1.0, n, angles + d), vol)
        sid, s = astra.create_sino(img, pid)
        astra.data2d.delete(sid)
        astra.projector.delete(pid)
        out += s / n_sub
    return out


def main() -> None:
    from recon.geometry import ScanGeometry
    from recon.methods import make_reconstructor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--photons", type=float, nargs="+", default=[2000.0, 20000.0])
    ap.add_argument("--angles", type=int, default=120)
    ap.add_argument("--iterations", type=int, default=70)
    ap.add_argument("--json")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    rows = []
    ways = (("mlem", "mlem", {}), ("fast", "mlem-flyscan", {"operator": "fast"}),
            ("subangle", "mlem-flyscan", {"operator": "subangle"}))
    print(f"{'size':>4} {'I0':>6} {'phantom':>13} " + " ".join(f"{w:>14}" for w, _, _ in ways) + "   (PSNR dB / s)")
    for n in args.sizes:
        angles_deg = np.arange(args.angles) * 180.0 / args.angles
        step = np.deg2rad(180.0 / args.angles)
        g = ScanGeometry.create(angles_deg, n, blur_angle_deg=180.0 / args.angles)
        recs = {w: make_reconstructor(g, m, iterations=args.iterations, **kw) for w, m, kw in ways}
        yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
        inside = yy ** 2 + xx ** 2 <= (n / 2) ** 2
        for name, truth in _phantoms(n).items():
            clean = _astra_flyscan(truth, np.deg2rad(angles_deg), step)
            for i0 in args.photons:
                sino = -np.log(np.maximum(rng.poisson(i0 * np.exp(-clean)), 1) / i0)[None].astype(np.float32)
                row = {"size": n, "photons": i0, "phantom": name, "angles": args.angles,
                       "iterations": args.iterations}
                for w, _, _ in ways:
                    t0 = time.perf_counter()
                    rec = recs[w](sino)[0]
                    sec = time.perf_counter() - t0
                    mse = float(np.mean((rec - truth)[inside] ** 2))
                    row[w] = {"psnr_db": round(10 * np.log10(truth.max() ** 2 / mse), 2), "seconds": round(sec, 2)}
                rows.append(row)
                print(f"{n:>4} {i0:>6.0f} {name:>13} " + " ".join(
                    f"{row[w]['psnr_db']:>7.2f} {row[w]['seconds']:>5.1f}s" for w, _, _ in ways), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "bench/flyscan_foreign.py", "args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
