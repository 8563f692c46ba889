"""Benchmark: images flytomo never made, scanned by another simulator, reconstructed by ``flytomo recon``.

The objects are scikit-image's sample images (the Shepp-Logan phantom, random binary
blobs as a two-phase material, coins, the camera man, the astronaut in grey), resized to
``size``² and cut to the disk the detector sees at every angle. Their fly-scans come from
astra-toolbox's projector (``foreign_experiment.astra_counts``: sub-angles averaged in
transmission over each exposure, Poisson noise), written as tomopy/dxchange lay out a
Data Exchange file (uint16 ``/exchange/data``, ``data_white``, ``data_dark``, ``theta`` in
degrees, no center recorded, the axis ``shift`` px off the detector middle). Each method
then runs through the ``flytomo recon`` command with its defaults; PSNR / SSIM
(``recon.metrics``, inside the disk) against the object.

    .venv/bin/python bench/foreign_images.py [--size 256] [--projections 120] [--photons 2000]
        [--shift 2.5] [--methods fbp mlem-flyscan rrdb] [--model LABEL=PATH ...] [--blend LABEL=PATH ...]
        [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from foreign_experiment import astra_counts, detector_columns  # noqa: E402 - a sibling bench script

IMAGES = ("shepp_logan", "blobs", "coins", "camera", "astronaut")


def foreign_image(name: str, size: int) -> np.ndarray:
    """(size, size) float32 attenuation per pixel: a scikit-image sample, resized, zero outside
    the disk of radius 0.45·size, scaled so the densest ray integrates to 1."""
    from skimage import color, data, transform

    if name == "shepp_logan":
        img = data.shepp_logan_phantom()
    elif name == "blobs":
        img = data.binary_blobs(size, blob_size_fraction=0.06, volume_fraction=0.45, rng=3).astype(float)
    elif name == "astronaut":
        img = color.rgb2gray(data.astronaut())
    else:
        img = getattr(data, name)().astype(float)
    img = transform.resize(np.asarray(img, float), (size, size), anti_aliasing=True)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    img = np.where(xx ** 2 + yy ** 2 <= (0.45 * size) ** 2, img - img.min(), 0.0)
    return (img / img.sum(axis=0).max()).astype(np.float32)


def write_dxchange(path: Path, counts: np.ndarray, angles_deg: np.ndarray, photons: float,
                   rng: np.random.Generator) -> None:
    """A Data Exchange file as tomopy/dxchange write it: uint16 frames, 10 flats, 5 darks."""
    shape = counts.shape[1:]
    with h5py.File(path, "w") as f:
        ex = f.create_group("exchange")
        ex.create_dataset("data", data=counts.astype(np.uint16), compression="gzip")
        ex["data_white"] = (rng.poisson(photons, (10, *shape)) + rng.poisson(100.0, (10, *shape))).astype(np.uint16)
        ex["data_dark"] = rng.poisson(100.0, (5, *shape)).astype(np.uint16)
        ex["theta"] = angles_deg
        f["implements"] = "exchange"


def central(volume: np.ndarray, size: int) -> np.ndarray:
    """The middle ``size``² of a reconstructed slice (the detector is wider than the object)."""
    n = volume.shape[-1]
    a = (n - size) // 2
    return volume[..., a:a + size, a:a + size]


def main(argv: list[str] | None = None) -> dict:
    from hpc.cli import main as flytomo
    from recon.io import open_volume
    from recon.metrics import psnr, ssim

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--projections", type=int, default=120)
    ap.add_argument("--photons", type=float, default=2000.0)
    ap.add_argument("--shift", type=float, default=2.5)
    ap.add_argument("--n-sub", type=int, default=8)
    ap.add_argument("--images", nargs="+", default=list(IMAGES), choices=IMAGES)
    ap.add_argument("--methods", nargs="*", default=["fbp", "mlem-flyscan", "rrdb"])
    ap.add_argument("--model", nargs="*", default=[], metavar="LABEL=PATH",
                    help="also method rrdb with these models (PATH or seed:PATH)")
    ap.add_argument("--blend", nargs="*", default=[], metavar="LABEL=PATH",
                    help="also method rrdb, the shipped default network with this second one (--rrdb-blend)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    runs = [(m, m, []) for m in args.methods] + [
        (f"rrdb {spec.split('=', 1)[0]}", "rrdb", ["--model", spec.split("=", 1)[1]]) for spec in args.model] + [
        (f"rrdb + {spec.split('=', 1)[0]}", "rrdb", ["--rrdb-blend", spec.split("=", 1)[1]]) for spec in args.blend]
    angles = np.linspace(0.0, np.pi, args.projections, endpoint=False)
    n_det = detector_columns(args.size, args.shift)
    results: dict = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                     "rows": []}
    t0 = time.perf_counter()
    print(f"{'image':>12} " + " ".join(f"{label:>22}" for label, _, _ in runs))
    with tempfile.TemporaryDirectory() as tmp:
        for k, name in enumerate(args.images):
            truth = foreign_image(name, args.size)
            rng = np.random.default_rng(k)
            counts = astra_counts(truth[None].astype(np.float64), angles, n_det, args.shift, args.n_sub,
                                  args.photons, rng)
            scan = Path(tmp) / f"{name}.h5"
            write_dxchange(scan, counts, np.rad2deg(angles), args.photons, rng)
            cells = []
            for label, method, extra in runs:
                out = Path(tmp) / f"{name}-{label.replace(' ', '_')}.zarr"
                code = flytomo(["recon", str(scan), "--out", str(out), "--method", method, "--quiet", *extra])
                if code != 0:
                    raise SystemExit(f"flytomo recon {method} failed on {scan} (exit {code})")
                vol = central(np.asarray(open_volume(out)[0][0]), args.size)
                p, s = psnr(vol, truth), ssim(vol, truth)
                results["rows"].append({"image": name, "method": label, "psnr": p, "ssim": s})
                cells.append(f"{p:6.2f} dB / {s:5.3f}")
            print(f"{name:>12} " + " ".join(f"{c:>22}" for c in cells), flush=True)
    for label, _, _ in runs:
        rows = [r for r in results["rows"] if r["method"] == label]
        results.setdefault("mean", {})[label] = {"psnr": float(np.mean([r["psnr"] for r in rows])),
                                                 "ssim": float(np.mean([r["ssim"] for r in rows]))}
    print(f"{'mean':>12} " + " ".join(f"{results['mean'][lb]['psnr']:6.2f} dB / {results['mean'][lb]['ssim']:5.3f}".rjust(22)
                                       for lb, _, _ in runs))
    results["wall_time_s"] = time.perf_counter() - t0
    print(f"total {results['wall_time_s']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
