"""``flytomo simulate``: a synthetic fly-scan file (FXI or DataExchange layout) with its ground truth."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from recon.errors import FlytomoError
from recon.io import write_dxchange, write_fxi
from recon.io._atomic import check_target
from recon.phantoms import ALL_FAMILIES, densest_ray, grid_lines, make_phantom
from recon.simulate import simulate_flyscan


#: flytomo simulate's blur where the angle step allows it (the seed paper's, degrees)
DEFAULT_BLUR_DEG = 1.5

def _gray(img: np.ndarray) -> np.ndarray:
    """(h, w, 3|4) colour → (h, w) luminance (Rec. 601 weights, alpha dropped)."""
    return img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _pad_square(img: np.ndarray) -> np.ndarray:
    """Zero-pad the last two axes of ``img`` to a centred square (the object in a larger field)."""
    h, w = img.shape[-2:]
    n = max(h, w)
    pad = [(0, 0)] * (img.ndim - 2) + [((n - h) // 2, n - h - (n - h) // 2), ((n - w) // 2, n - w - (n - w) // 2)]
    return np.pad(img, pad)


def read_image(path: str, max_line_integral: float) -> np.ndarray:
    """An image file (TIFF, PNG, NPY; 2D or a 3D stack) as attenuation per pixel, densest ray
    scaled to ``max_line_integral``: (n, n) or (z, n, n) float32. Colour (h, w, 3|4) becomes
    grey; an (h, w) image that is not square is zero-padded, centred, to n = max(h, w)."""
    p = Path(path)
    if not p.is_file():
        raise FlytomoError(p, "no such image file")
    try:
        if p.suffix.lower() == ".npy":
            img = np.load(p, allow_pickle=False)
        elif p.suffix.lower() in (".tif", ".tiff"):
            import tifffile
            img = tifffile.imread(p)
        else:
            from skimage.io import imread
            img = imread(p, as_gray=True)
    except Exception as err:
        raise FlytomoError(p, f"cannot be read as an image ({type(err).__name__}: {err})") from None
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] in (3, 4) and img.shape[0] > 4:  # (h, w, RGB[A]), not a stack
        img = _gray(img)
    img = np.asarray(img, dtype=np.float32)
    if img.ndim not in (2, 3) or min(img.shape[-2:]) < 8:
        raise FlytomoError(p, f"needs an image (h, w) or a stack (z, h, w) at least 8 pixels wide, got shape {img.shape}")
    if not np.all(np.isfinite(img)):
        raise FlytomoError(p, "contains NaN or infinite values")
    img = np.clip(img - min(0.0, float(img.min())), 0, None)
    if img.shape[-1] != img.shape[-2]:
        img = _pad_square(img)
    peak = densest_ray(img)
    if peak <= 0:
        raise FlytomoError(p, "is empty (all zero)")
    return img * np.float32(max_line_integral / peak)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FlytomoError(out, "already exists; pass --overwrite to replace it")
    check_target(out, args.overwrite, folder=False, inputs=[args.image] if args.image else [])
    if args.image:
        obj = read_image(args.image, args.max_line_integral)
    elif args.phantom == "grid":
        obj = grid_lines(args.size, max_line_integral=args.max_line_integral)
    elif args.phantom in ALL_FAMILIES:
        obj = make_phantom(args.phantom, args.size, args.seed, ndim=args.ndim, max_line_integral=args.max_line_integral)
    else:
        raise FlytomoError(None, f"unknown phantom '{args.phantom}'; choose one of {', '.join(ALL_FAMILIES)}, grid")
    if args.angles < 2 or args.photons <= 0 or (args.blur_angle is not None and args.blur_angle < 0):
        raise FlytomoError(None, "need --angles ≥ 2, --photons > 0 and --blur-angle ≥ 0")
    if args.blur_angle is None:  # one continuous turn: an exposure turns at most the angle step
        args.blur_angle = min(DEFAULT_BLUR_DEG, abs(args.range) / args.angles)
    angles = args.start_angle + np.arange(args.angles) * (args.range / args.angles)
    scan = simulate_flyscan(obj, angles, args.blur_angle, args.photons, dark=args.dark, n_sub=args.n_sub,
                            seed=args.seed, center=args.center)
    writer = write_fxi if args.format == "fxi" else write_dxchange
    kwargs = {"scan_id": args.seed, "scan_time": 0.0} if args.format == "fxi" else {}
    writer(out, scan.tomo, scan.flats, scan.darks, scan.angles_deg, blur_angle_deg=args.blur_angle, **kwargs)
    truth = out.with_name(out.stem + "_truth.npy")
    np.save(truth, obj[None] if obj.ndim == 2 else obj)
    print(f"wrote {out} ({args.format}: {scan.tomo.shape[0]} angles × {scan.tomo.shape[1]} rows × "
          f"{scan.tomo.shape[2]} columns, blur {args.blur_angle}°, I0 {args.photons:g}) and its truth {truth}",
          file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="write a synthetic fly-scan file from a phantom or an image",
                       description="Simulate a fly-scan (seed paper Eq. 4-5: Poisson counts of the mean "
                                   "sub-angle intensity) and write it with flats, darks and its ground truth "
                                   "(OUT_truth.npy, attenuation per pixel, (z, n, n)).")
    p.add_argument("out", help="output scan file (.h5)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--phantom", default="cracked", help=f"{', '.join(ALL_FAMILIES)} or grid (default cracked)")
    src.add_argument("--image", help="an image file (tif, png, npy; (h, w), (z, h, w) or colour) as the object; "
                     "not square: zero-padded to a square")
    p.add_argument("--size", type=int, default=128, help="phantom size n (pixels)")
    p.add_argument("--ndim", type=int, choices=(2, 3), default=2, help="2D slice or 3D volume phantom")
    p.add_argument("--angles", type=int, default=120, help="number of projections")
    p.add_argument("--range", type=float, default=180.0, help="angular range in degrees")
    p.add_argument("--start-angle", type=float, default=0.0, help="first exposure middle in degrees")
    p.add_argument("--blur-angle", type=float, default=None,
                   help=f"angle turned during one exposure (degrees; default the angle step, at most {DEFAULT_BLUR_DEG}: "
                        "the seed paper's 1.5° at 120 projections over 180°)")
    p.add_argument("--photons", type=float, default=2000.0, help="open-beam photons per pixel per frame (I0)")
    p.add_argument("--dark", type=float, default=100.0, help="dark offset counts")
    p.add_argument("--n-sub", type=int, default=16, help="sub-angles per exposure in the forward model")
    p.add_argument("--center", type=float, help="rotation-axis column (default (n-1)/2)")
    p.add_argument("--max-line-integral", type=float, default=2.0, help="scale so the densest ray integrates to this")
    p.add_argument("--format", choices=("fxi", "dxchange"), default="fxi", help="file layout")
    p.add_argument("--seed", type=int, default=0, help="random seed (phantom and noise)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing scan file of that name")
    p.set_defaults(func=run)
