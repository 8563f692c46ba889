"""Defects a beamline's raw scan can carry, and what ``flytomo recon`` makes of them.

A cracked 3D phantom is fly-scanned (``flytomo simulate``, Data Exchange layout, the axis
2.8 px right of the detector's middle and not recorded, so every run finds it) and written
again with one defect each:

- ``dead column``: one detector column with flat = dark;
- ``dropped frames``: two exposures without beam (counts at the dark level, then zeros);
- ``unlit flats, a dark with beam``: 2 of the 10 flat frames at the dark level (shutter
  closed), 1 of the 10 dark frames at the flat level (beam on);
- ``air in the middle``: the sample only above and below the middle 40 % of the rows;
- ``zingers``: 0.1 % of the counts raised 2–10× (also run with ``--remove-outliers 0.3``);
- ``flux ±5 %``: each exposure's beam 5 % (s.d.) off the flats';
- ``beam dips``: the beam 30 % dimmer for a tenth of the exposures in a row, and 40 % for one;
- ``rings``: every detector column's gain 1 % (s.d.) off the flats', four of them ±4 % more
  (also run with each ``--remove-stripes`` method, and those on the clean scan);
- ``flats saturated``: 25x the exposure on a 16-bit detector, the open beam clipped at 65,535;
- ``flats 5 % brighter``: the flats taken with 5 % more beam than the projections (this and
  the flux case also run with ``--air-columns 8``, and that on the clean scan);
- ``jitter``: the phantom fly-scanned again by a stage that wobbles 1 px up/down and 1.5 px
  sideways (s.d.) between exposures (also run with ``--correct-jitter``, and that on the
  clean scan);
- ``axis tilted``: the phantom fly-scanned again about an axis leaning 0.5° in the detector
  plane (also run with ``--correct-tilt``, and that on the clean scan).

Each is reconstructed by FBP and modified MLEM with the defaults of ``flytomo recon`` and
scored against the phantom: PSNR (``recon.metrics.psnr``, inside the disk) averaged over the
slices with sample in them outside the middle 40 % (the same slices for every case, since
``air in the middle`` has no sample there), and the center found.

    .venv/bin/python bench/raw_defects.py [--size 128] [--json out.json] [--only WORDS ...]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from hpc.cli import main as flytomo
from recon.io import open_volume
from recon.io.alignment import observable_part
from recon.metrics import psnr
from recon.simulate import simulate_flyscan
from benchio import save_json

OUTLIER_THRESHOLD = 0.3
CENTER_OFFSET_PX = 2.8
PHOTONS = 3000
BLUR_DEG = 1.5  # flytomo simulate's default
TILT_DEG = 0.5


def _dead_column(f: h5py.File) -> None:
    col = f["exchange/data_white"].shape[2] // 3
    f["exchange/data_white"][:, :, col] = f["exchange/data_dark"][:, :, col]


def _dropped_frames(f: h5py.File) -> None:
    a = f["exchange/data"].shape[0] // 4
    f["exchange/data"][a] = f["exchange/data_dark"][0]
    f["exchange/data"][a + 1] = 0.0


def _bad_flat_and_dark(f: h5py.File) -> None:
    """Two of the 10 flats unlit (the shutter closed: dark counts) and one of the 10 darks taken
    with the beam on (flat counts)."""
    flats, darks = f["exchange/data_white"], f["exchange/data_dark"]
    bright, dim = flats[0], darks[1]
    flats[3], flats[7] = dim, dim
    darks[5] = bright


def _air_rows(n_rows: int) -> slice:
    return slice(int(0.3 * n_rows), int(0.7 * n_rows) + 1)


def _air_in_the_middle(f: h5py.File) -> None:
    rows = _air_rows(f["exchange/data"].shape[1])
    flat = f["exchange/data_white"][:, rows].mean(axis=0)
    n_angles = f["exchange/data"].shape[0]
    f["exchange/data"][:, rows] = np.random.default_rng(1).poisson(
        np.broadcast_to(flat, (n_angles, *flat.shape))).astype(np.float32)


def _zingers(f: h5py.File) -> None:
    tomo = f["exchange/data"][:]
    rng = np.random.default_rng(2)
    hit = rng.random(tomo.shape) < 1e-3
    tomo[hit] *= rng.uniform(2.0, 10.0, int(hit.sum()))
    f["exchange/data"][...] = tomo


def _flux(f: h5py.File) -> None:
    tomo, dark = f["exchange/data"][:], f["exchange/data_dark"][:].mean(axis=0)
    scale = 1.0 + 0.05 * np.random.default_rng(3).standard_normal(tomo.shape[0])
    f["exchange/data"][...] = (tomo - dark) * scale[:, None, None] + dark


def _beam_dips(f: h5py.File) -> None:
    """The beam 30 % dimmer for a tenth of the exposures (from 40 % of the scan on) and 40 % for
    one (at 75 %), as in the flats elsewhere."""
    tomo, dark = f["exchange/data"][:], f["exchange/data_dark"][:].mean(axis=0)
    n = tomo.shape[0]
    scale = np.ones(n)
    scale[int(0.4 * n):int(0.4 * n) + n // 10] = 0.7
    scale[int(0.75 * n)] = 0.6
    f["exchange/data"][...] = (tomo - dark) * scale[:, None, None] + dark


def _rings(f: h5py.File) -> None:
    """Detector columns whose gain drifted after the flats: 1 % (s.d.) on every column, ±4 % on four."""
    tomo, dark = f["exchange/data"][:], f["exchange/data_dark"][:].mean(axis=0)
    rng = np.random.default_rng(4)
    gain = 1.0 + 0.01 * rng.standard_normal(tomo.shape[2])
    gain[rng.choice(tomo.shape[2], 4, replace=False)] += np.array([0.04, -0.04, 0.04, -0.04])
    f["exchange/data"][...] = (tomo - dark) * gain + dark


def _flat_scale(f: h5py.File) -> None:
    """Flats taken at 5 % more beam than the projections (ring current, exposure)."""
    tomo, dark = f["exchange/data"][:], f["exchange/data_dark"][:].mean(axis=0)
    f["exchange/data"][...] = (tomo - dark) / 1.05 + dark


def _jitter(f: h5py.File) -> None:
    """The phantom fly-scanned again by a stage that puts the sample 1 px up/down and 1.5 px
    sideways (s.d.) off its place in each exposure (only the part the data can tell from the
    sample's position: ``recon.io.alignment.observable_part``)."""
    angles = f["exchange/theta"][:]
    rng = np.random.default_rng(6)
    _resimulate(f, jitter=observable_part(rng.normal(0, 1.0, angles.size), rng.normal(0, 1.5, angles.size), angles))


def _tilt(f: h5py.File) -> None:
    """The phantom fly-scanned again about an axis leaning 0.5° in the detector plane (1.1 px
    across 128 rows; ``simulate_flyscan(tilt_deg=)``: the noise-free frames turned)."""
    _resimulate(f, tilt_deg=TILT_DEG)


def _resimulate(f: h5py.File, **kwargs) -> None:
    """The clean scan's phantom fly-scanned again as ``flytomo simulate`` did (seed 3), with
    ``kwargs`` for ``simulate_flyscan`` (jitter, tilt_deg), written over ``f``'s frames."""
    truth = np.load(Path(f.filename).with_name("clean_truth.npy"))
    scan = simulate_flyscan(truth, f["exchange/theta"][:], BLUR_DEG, PHOTONS, seed=3,
                            center=(truth.shape[-1] - 1) / 2 + CENTER_OFFSET_PX, **kwargs)
    f["exchange/data"][...], f["exchange/data_white"][...], f["exchange/data_dark"][...] = \
        scan.tomo, scan.flats, scan.darks


def _saturated_flats(f: h5py.File) -> None:
    """A 16-bit detector with 25x the exposure: the open beam (~75,000 counts) clips at 65,535 in
    the flats and in the projections' air; counts through the sample stay below it."""
    for name in ("exchange/data", "exchange/data_white"):
        f[name][...] = np.minimum(f[name][:] * 25.0, 65535.0)


#: (label, defect written into the scan or None, extra `flytomo recon` arguments)
CASES: tuple[tuple[str, Callable[[h5py.File], None] | None, tuple[str, ...]], ...] = (
    ("as simulated", None, ()),
    ("dead column", _dead_column, ()),
    ("dropped frames", _dropped_frames, ()),
    ("unlit flats, a dark with beam", _bad_flat_and_dark, ()),
    ("air in the middle", _air_in_the_middle, ()),
    ("zingers", _zingers, ()),
    (f"zingers, --remove-outliers {OUTLIER_THRESHOLD}", _zingers, ("--remove-outliers", str(OUTLIER_THRESHOLD))),
    ("flux ±5 %", _flux, ()),
    ("beam dips (30 % for a tenth, 40 % for one)", _beam_dips, ()),
    ("rings (column gains)", _rings, ()),
    ("rings, --remove-stripes mean", _rings, ("--remove-stripes", "mean")),
    ("rings, --remove-stripes sorting", _rings, ("--remove-stripes", "sorting")),
    ("rings, --remove-stripes all", _rings, ("--remove-stripes", "all")),
    ("as simulated, --remove-stripes mean", None, ("--remove-stripes", "mean")),
    ("as simulated, --remove-stripes sorting", None, ("--remove-stripes", "sorting")),
    ("as simulated, --remove-stripes all", None, ("--remove-stripes", "all")),
    ("flats saturated (16-bit full scale)", _saturated_flats, ()),
    ("flats 5 % brighter", _flat_scale, ()),
    ("flats 5 % brighter, --air-columns 8", _flat_scale, ("--air-columns", "8")),
    ("flux ±5 %, --air-columns 8", _flux, ("--air-columns", "8")),
    ("as simulated, --air-columns 8", None, ("--air-columns", "8")),
    ("jitter 1 px up/down, 1.5 px across", _jitter, ()),
    ("jitter, --correct-jitter", _jitter, ("--correct-jitter",)),
    ("as simulated, --correct-jitter", None, ("--correct-jitter",)),
    ("axis tilted 0.5°", _tilt, ()),
    ("axis tilted, --correct-tilt", _tilt, ("--correct-tilt",)),
    ("as simulated, --correct-tilt", None, ("--correct-tilt",)),
)


def run(size: int, angles: int, folder: Path, methods: tuple[str, ...] = ("fbp", "mlem-flyscan"),
        only: tuple[str, ...] = ()) -> dict:
    """Simulate, break, reconstruct and score every case (those whose label holds one of
    ``only``, where given); the results as a dict."""
    clean = folder / "clean.h5"
    center = (size - 1) / 2 + CENTER_OFFSET_PX
    assert flytomo(["simulate", str(clean), "--phantom", "cracked", "--size", str(size), "--ndim", "3",
                    "--angles", str(angles), "--photons", str(PHOTONS), "--format", "dxchange", "--seed", "3",
                    "--center", str(center), "--overwrite"]) == 0  # simulate records no center: it is found
    truth = np.load(folder / "clean_truth.npy")
    keep = np.array([t.max() > 0 for t in truth])  # slices with sample, outside the air band of one case
    keep[_air_rows(size)] = False
    rows = []
    for label, defect, extra in CASES:
        if only and not any(word in label for word in only):
            continue
        scan = clean
        if defect is not None:
            scan = folder / f"case{CASES.index((label, defect, extra))}.h5"
            shutil.copy(clean, scan)
            with h5py.File(scan, "r+") as f:
                defect(f)
        row = {"case": label, "extra": list(extra)}
        for method in methods:
            out = folder / f"{scan.stem}-{method}.zarr"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t0 = time.perf_counter()
                assert flytomo(["recon", str(scan), "--out", str(out), "--method", method, "--overwrite",
                                "--quiet", *extra]) == 0
            volume, attrs = open_volume(out)
            row[method] = float(np.mean([psnr(v, t) for v, t, k in zip(volume[:], truth, keep) if k]))
            row[f"{method}_s"] = time.perf_counter() - t0
            row["center"] = attrs["geometry"]["center"]
            row["warnings"] = sorted({str(w.message).split(": ", 1)[-1][:90] for w in caught})
        rows.append(row)
    return {"settings": {"size": size, "angles": angles, "photons": PHOTONS, "true_center": center,
                         "outlier_threshold": OUTLIER_THRESHOLD}, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--angles", type=int, default=180)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", nargs="+", default=(), metavar="WORDS",
                    help="run only the cases whose label holds one of these")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flytomo-defects-") as tmp:
        result = run(args.size, args.angles, Path(tmp), only=tuple(args.only))
    s = result["settings"]
    print(f"{s['size']}³ cracked phantom, {s['angles']} angles, I0 {s['photons']}, true center {s['true_center']:.2f}")
    print(f"{'case':>34} {'FBP dB':>8} {'MLEM-fly dB':>12} {'center':>8}  warnings")
    for r in result["rows"]:
        print(f"{r['case']:>34} {r['fbp']:8.2f} {r['mlem-flyscan']:12.2f} {r['center']:8.2f}  "
              + ("; ".join(r["warnings"]) or "-"))
    save_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
