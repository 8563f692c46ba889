"""The rotation axis of scans that miss part of the half turn (0–150°, 0–120°, 0–90°).

One slice of each of the four test families (phantom seeds 100–103) in a 128-px field, the
sample 96 px wide (inside the field at every angle) or 128 px (the field's disk: past the
edges at some angles once the axis is off the middle), the axis 5.2 px left or 3.4 px right
of the middle, fly-scanned at I0 300 and 2000 (1.5° per exposure, 1.5° steps). Each scan's
axis is found by mirroring half turns (the search for whole half turns, the wedge
resampled away as before) and by :func:`recon.io.center.find_center` as it is (the centre
of mass's sinusoid where the sample is inside the field, the mirror otherwise); the table
gives the error |found − true| in pixels, mean and max over the 8 scans of each set.

    .venv/bin/python bench/limited_angle_center.py [--json bench/results/limited_angle_center.json]   (~20 s)
"""
from __future__ import annotations

import numpy as np

from benchio import run_and_save
from recon.io.center import _half_turn, find_center, inside_field
from recon.phantoms import make_phantom
from recon.simulate import line_integrals_from_counts, simulate_flyscan

FIELD, STEP, BLUR = 128, 1.5, 1.5
FAMILIES = ("heterogeneous", "cracked", "network", "radial")
SPANS = (180, 150, 120, 90)
SAMPLES = (96, 128)
PHOTONS = (300.0, 2000.0)


def _scan(family: int, sample: int, span: int, i0: float) -> tuple[np.ndarray, np.ndarray, float]:
    obj = np.zeros((FIELD, FIELD), np.float32)
    o = (FIELD - sample) // 2
    obj[o:o + sample, o:o + sample] = make_phantom(FAMILIES[family], sample, seed=100 + family)
    angles = np.arange(int(span / STEP)) * STEP
    center = (FIELD - 1) / 2 + (3.4 if family % 2 else -5.2)
    scan = simulate_flyscan(obj, angles, BLUR, i0, center=center, seed=family, n_sub=4)
    return np.asarray(line_integrals_from_counts(scan))[0], angles, center


def run() -> dict:
    rows = []
    for sample in SAMPLES:
        for span in SPANS:
            mirror, default, inside = [], [], 0
            for family in range(len(FAMILIES)):
                for i0 in PHOTONS:
                    sino, angles, center = _scan(family, sample, span, i0)
                    mirror.append(abs(find_center(_half_turn(sino, angles)) - center))
                    default.append(abs(find_center(sino, angles) - center))
                    inside += bool(inside_field(sino))
            row = {"sample_px": sample, "span_deg": span, "inside_field": inside,
                   "mirror_mean": float(np.mean(mirror)), "mirror_max": float(np.max(mirror)),
                   "default_mean": float(np.mean(default)), "default_max": float(np.max(default))}
            rows.append(row)
            print(f"sample {sample:3d} px, {span:3d}°: inside {inside}/8  mirror {row['mirror_mean']:5.2f} "
                  f"(max {row['mirror_max']:5.2f})  default {row['default_mean']:5.2f} (max {row['default_max']:5.2f}) px",
                  flush=True)
    return {"settings": {"field_px": FIELD, "step_deg": STEP, "blur_deg": BLUR, "families": FAMILIES,
                         "photons": PHOTONS, "phantom_seeds": [100, 101, 102, 103]}, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    return run_and_save(__doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
