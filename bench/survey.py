"""The survey (every scan opened, its axis and pad found; with the alignment flags its tilt and
jitter measured) in the driver, one scan after the other, against spread over a Dask
LocalCluster's workers (``survey_scans(map_fn=executor.map)``, what ``flytomo run`` does).

A synthetic experiment (``flytomo simulate-experiment``, ``--size`` voxels a side) is surveyed
with ``center: auto`` and, with ``--align``, ``correct_jitter`` and ``correct_tilt`` (a whole
read of every scan and 7+ axis searches each); best of ``--repeat`` wall times; the plans must
be equal.

    .venv/bin/python bench/survey.py [--size 96] [--scans 8] [--workers 2] [--align] [--json F]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

from hpc.cli import main as flytomo
from hpc.config import ExecutorConfig
from hpc.executors import make_executor
from hpc.planner import survey_scans
from recon.io.preprocess import Corrections
from benchio import save_json


def timed(files: list[Path], corrections: Corrections | None, map_fn, repeat: int) -> tuple[float, list]:
    best, plans = float("inf"), []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plans = survey_scans(files, center="auto", corrections=corrections, map_fn=map_fn)
        best = min(best, time.perf_counter() - t0)
    return best, plans


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--scans", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--align", action="store_true", help="correct_jitter and correct_tilt (measured per scan)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    corrections = Corrections(correct_jitter=True, correct_tilt=True) if args.align else None
    with tempfile.TemporaryDirectory(prefix="flytomo-survey-") as tmp:
        assert flytomo(["simulate-experiment", tmp, "--size", str(args.size), "--scans", str(args.scans),
                        "--quiet"]) == 0
        files = sorted((Path(tmp) / "raw").glob("*.h5"))
        local_s, local_plans = timed(files, corrections, None, args.repeat)
        with make_executor(ExecutorConfig(kind="dask", dask={"workers": args.workers})) as ex:
            ex.map(abs, [1] * args.workers)  # workers up and importing before the clock starts
            dask_s, dask_plans = timed(files, corrections, ex.map, args.repeat)
    same = [p.geometry.to_dict() for p in local_plans] == [p.geometry.to_dict() for p in dask_plans]
    result = {"size": args.size, "scans": len(files), "workers": args.workers, "align": args.align,
              "local_s": local_s, "dask_s": dask_s, "speedup": local_s / dask_s, "plans_equal": same}
    print(f"{len(files)} scans of {args.size}³{', jitter and tilt measured' if args.align else ''}: "
          f"driver {local_s:.2f} s, Dask {args.workers} workers {dask_s:.2f} s "
          f"({local_s / dask_s:.2f}x); plans equal: {same}")
    save_json(args.json, result)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
