"""Crack fractions of finished experiments under variants of the solid level (``solid_far``).

Each CASE is ``STORE:TRUTH`` — a ``flytomo run`` store (``recon/NAME.zarr``) and its truth:
``truth/crack_fraction.csv`` of ``flytomo simulate-experiment`` (crack fraction per scan) or
the JSON of ``bench/foreign_experiment.py`` (crack + pore fraction, its ``truth`` list) — or
``truth:DIR`` for the true volumes of a simulated experiment (``DIR/truth/volumes.npz``
against ``DIR/truth/crack_fraction.csv``: the segmentation alone). Every variant segments
every scan with the default parameters but ``solid_far`` (``--variants solid``), but the
solid level's estimate and the valley search for thin cracks (``--variants thin``), the
smallest piece of the particle kept (``--variants pieces``), the defect smoothing
(``--variants smoothing``) or the envelope closing's radius (``--variants closing``); prints
MAE, bias and the largest error in percentage points per case and variant.

    .venv/bin/python bench/solid_level.py CASE [CASE ...] [--variants solid|thin|pieces|smoothing|closing] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from benchio import save_json

from analysis.run import analyze_time_point
from analysis.segment import SegmentationParams, segment_volume
from analysis.store import open_store

VARIANTS = {"envelope median (1, 1)": {"solid_far": (1.0, 1.0)}, "ramp (0.05, 0.15)": {"solid_far": (0.05, 0.15)},
            "ramp (0.03, 0.10)": {"solid_far": (0.03, 0.10)}, "far median always (0, 0)": {"solid_far": (0.0, 0.0)}}
#: ``--variants thin``: the solid level's estimate and the valley search for thin grey cracks
THIN_VARIANTS = {"as configured": {}, "shorth": {"solid_estimate": "shorth"},
                 "valley 0.25": {"valley_fraction": 0.25},
                 "shorth + valley 0.25": {"solid_estimate": "shorth", "valley_fraction": 0.25},
                 "shorth + valley 0.35": {"solid_estimate": "shorth", "valley_fraction": 0.35},
                 "local": {"pv_reference": "local"},
                 "valley 0.25 + local": {"valley_fraction": 0.25, "pv_reference": "local"},
                 "shorth + valley 0.25 + local": {"solid_estimate": "shorth", "valley_fraction": 0.25,
                                                  "pv_reference": "local"}}

#: ``--variants pieces``: the smallest piece of the thresholded particle kept (a fragment cut
#: off by cracks, or a speck of noise next to the surface)
PIECE_VARIANTS = {"as configured": {}, "pieces >= 0.05 %": {"min_piece_fraction": 0.0005},
                  "every piece": {"min_piece_fraction": 0.0}}
#: ``--variants smoothing``: the defect smoothing (noisy reconstructions speckle the defect map)
SMOOTHING_VARIANTS = {"as configured": {}, "defect_sigma 0.75": {"defect_sigma": 0.75},
                      "defect_sigma 1.0": {"defect_sigma": 1.0}}
#: ``--variants closing``: the envelope closing's radius (crack mouths at the surface)
CLOSING_VARIANTS = {"as configured": {}, "closing 4": {"closing_radius": 4}, "closing 5": {"closing_radius": 5}}

VARIANT_SETS = {"solid": VARIANTS, "thin": THIN_VARIANTS, "pieces": PIECE_VARIANTS, "smoothing": SMOOTHING_VARIANTS,
                "closing": CLOSING_VARIANTS}


def case_fractions(case: str, variant: dict) -> tuple[np.ndarray, np.ndarray]:
    """(measured, true) fractions in percent, one per scan, for one CASE and variant (the
    segmentation parameters that differ from the defaults)."""
    params = SegmentationParams(**variant)
    if case.startswith("truth:"):
        d = Path(case[len("truth:"):]) / "truth"
        truth = pd.read_csv(d / "crack_fraction.csv")["crack_fraction"].to_numpy(float)
        vols = np.load(d / "volumes.npz")["volume"]
        got = [segment_volume(v, params).summary()["crack_fraction"] for v in vols]
        return 100 * np.asarray(got), 100 * truth
    store, truth_path = case.rsplit(":", 1)
    with_pores = truth_path.endswith(".json")
    truth = (np.asarray(json.loads(Path(truth_path).read_text())["truth"], float) if with_pores
             else pd.read_csv(truth_path)["crack_fraction"].to_numpy(float))
    got = []
    for t in range(len(open_store(store).scans)):
        r = analyze_time_point(store, t, params)
        got.append(r["crack_fraction"] + (r["pore_fraction"] if with_pores else 0.0))
    return 100 * np.asarray(got), 100 * truth[:len(got)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--variants", choices=tuple(VARIANT_SETS), default="solid",
                    help="solid: the solid_far shares; thin: the solid estimate and the valley search; "
                         "pieces: the smallest piece kept; smoothing: defect_sigma; closing: closing_radius")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    for case in args.cases:
        print(case)
        for name, variant in VARIANT_SETS[args.variants].items():
            got, truth = case_fractions(case, variant)
            e = got - truth
            row = {"case": case, "variant": name, "params": {k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in variant.items()},
                   "mae_pp": float(np.abs(e).mean()),
                   "bias_pp": float(e.mean()), "max_pp": float(np.abs(e).max()),
                   "measured_pct": got.tolist(), "truth_pct": truth.tolist()}
            rows.append(row)
            print(f"  {name:>26}  MAE {row['mae_pp']:.3f}  bias {row['bias_pp']:+.3f}  max {row['max_pp']:.3f}")
    out = {"results": rows}
    save_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
