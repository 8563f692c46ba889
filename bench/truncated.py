"""A sample wider than the field of view: reconstruction with and without the automatic pad.

Two sets, each a phantom fly-scanned (I0 2000, 120 projections over 180°, 1.5° blur) on a
detector wider than the sample would need, then cut to the middle ``field`` columns:

- ``slices``: one slice of each of the four test families at 1.0-3.0× a 128-px field
  (phantom seed 11, which no rule was chosen on), the axis on the middle column;
- ``slabs``: 8 rows through the middle of 3D heterogeneous and cracked phantoms 96 px across
  (1.5× a 64-px field, phantom seeds 4-6), the axis 0, +1.7 or −2.5 px off the middle.

Each is reconstructed by FBP and modified MLEM (the known axis) on the field alone
(``pad_columns`` 0), with :func:`recon.truncation.auto_pad`, and, as the ceiling, from the
untruncated scan; PSNR (``recon.metrics.psnr``, the field's inscribed disk) against the
phantom's middle.

    .venv/bin/python bench/truncated.py [--json bench/results/truncated.json]
"""
from __future__ import annotations

import sys

import numpy as np

from recon.geometry import ScanGeometry
from recon.methods import make_reconstructor
from recon.metrics import psnr
from recon.phantoms import make_phantom
from recon.simulate import line_integrals_from_counts, simulate_flyscan
from recon.truncation import auto_pad, edge_ratio
from benchio import save_json, timed_run

ANGLES = np.arange(120) * 1.5
METHODS = ("fbp", "mlem-flyscan")


def _score(li: np.ndarray, truth: np.ndarray, field: int, center_off: float) -> dict:
    """Scores of one truncated case: li (z, angles, size) untruncated, truth (z, size, size)."""
    size = li.shape[-1]
    lo = (size - field) // 2
    sino, mid = li[..., lo:lo + field], truth[:, lo:lo + field, lo:lo + field]
    pad = auto_pad(sino)
    row = {"size": size, "field": field, "center_offset": center_off, "edge_ratio": edge_ratio(sino), "pad": pad}
    for m in METHODS:
        full = ScanGeometry.create(ANGLES, size, center=(size - 1) / 2 + center_off, blur_angle_deg=1.5)
        ceiling = make_reconstructor(full, m)(li)[:, lo:lo + field, lo:lo + field]
        row[f"{m}_untruncated"] = float(np.mean([psnr(a, b) for a, b in zip(ceiling, mid)]))
        for label, p in (("off", 0), ("auto", pad)):
            g = ScanGeometry.create(ANGLES, field, center=(field - 1) / 2 + center_off, blur_angle_deg=1.5,
                                    pad_columns=p)
            r = make_reconstructor(g, m)(sino)
            row[f"{m}_{label}"] = float(np.mean([psnr(a, b) for a, b in zip(r, mid)]))
    return row


def run() -> dict:
    rows = []
    for size in (128, 160, 192, 224, 256, 384):
        for family in ("heterogeneous", "cracked", "network", "radial"):
            obj = make_phantom(family, size, seed=11)
            li = np.asarray(line_integrals_from_counts(simulate_flyscan(obj, ANGLES, 1.5, 2000, seed=2)))
            rows.append({"set": "slices", "family": family, **_score(li, obj[None], 128, 0.0)})
    for family in ("heterogeneous", "cracked"):
        for seed in (4, 5, 6):
            vol = make_phantom(family, 96, ndim=3, seed=seed)[44:52]
            for off in (0.0, 1.7, -2.5):
                s = simulate_flyscan(vol, ANGLES, 1.5, 2000, seed=1, center=47.5 + off)
                li = np.asarray(line_integrals_from_counts(s))
                rows.append({"set": "slabs", "family": family, "seed": seed, **_score(li, vol, 64, off)})
    return {"settings": {"photons": 2000, "angles": 120, "blur_deg": 1.5}, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    result, args = timed_run(__doc__, run, argv)
    print(f"{'set':>6} {'family':>13} {'size':>4} {'off':>5} {'ratio':>5} {'pad':>3}   "
          f"{'FBP off/auto/untruncated':>24}   {'MLEM-fly off/auto/untruncated':>29}")
    for r in result["rows"]:
        print(f"{r['set']:>6} {r['family']:>13} {r['size']:4d} {r['center_offset']:5.1f} {r['edge_ratio']:5.2f} "
              f"{r['pad']:3d}   {r['fbp_off']:7.2f} {r['fbp_auto']:7.2f} {r['fbp_untruncated']:8.2f}   "
              f"{r['mlem-flyscan_off']:9.2f} {r['mlem-flyscan_auto']:9.2f} {r['mlem-flyscan_untruncated']:9.2f}")
    for s in ("slices", "slabs"):
        padded = [r for r in result["rows"] if r["set"] == s and r["pad"]]
        for m in METHODS:
            gain = [r[f"{m}_auto"] - r[f"{m}_off"] for r in padded]
            print(f"{s}: {m} over {len(padded)} padded cases: mean gain {np.mean(gain):+.2f} dB "
                  f"(min {min(gain):+.2f}, max {max(gain):+.2f})")
    save_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
