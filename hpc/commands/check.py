"""``flytomo check CONFIG``: validate an experiment config and its files, reporting every problem.

Each problem is one line with its key path (``reconstruction.iterations: must be ≥ 1, got 0``)
or file; scans are opened (metadata only) and the temperature log read. Exit 0 with a
summary when there is nothing wrong (warnings allowed), 2 otherwise.
"""
from __future__ import annotations

import argparse
import sys

from hpc.commands import first_line


#: what each ``remove_stripes`` method does, in the words ``flytomo check`` prints
STRIPE_WORDS = {"mean": "each detector column's mean over the angles levelled to its neighbours' median "
                        "(Boin & Haibel 2006)",
                "sorting": "Vo et al. 2018's sorting method (algotom)",
                "all": "Vo et al. 2018's large, dead and small stripe removal (algotom)"}


def run(args: argparse.Namespace) -> int:
    from hpc.config import apply_overrides, check_config, read_yaml
    from hpc.engine import store_outlook

    raw = apply_overrides(read_yaml(args.config), executor=args.executor)
    exp, problems = check_config(args.config, raw=raw)
    errors = [p for p in problems if not p.warning]
    for p in problems:
        print(f"{args.config}: {'warning: ' if p.warning else ''}{p}", file=sys.stderr)
    if errors or exp is None:
        print(f"{args.config}: {len(errors)} problem(s); nothing was run", file=sys.stderr)
        return 2
    cfg = exp.config
    files = exp.scan_files()
    r = cfg.reconstruction
    print(f"{args.config}: OK")
    print(f"  scans        {len(files)} file(s), {files[0].name} .. {files[-1].name}")
    print(f"  temperature  {exp.temperature_log or '(from the scan files)'}")
    print(f"  method       {r.method} {exp.method_options() or ''}".rstrip())
    if r.remove_outliers is not None:
        print(f"  zingers      removed: samples more than {r.remove_outliers:g} below their neighbours' medians")
    if r.remove_stripes is not None:
        print(f"  stripes      removed: '{r.remove_stripes}', {STRIPE_WORDS[r.remove_stripes]}")
    if r.air_columns == 0:
        print("  air          no levelling, and no hint where the edges look like a beam that changed")
    elif r.air_columns is not None:
        print(f"  air          each projection levelled by its outer {r.air_columns} columns per side")
    if r.reverse_rotation:
        print("  rotation     reversed: each recorded angle θ read as −θ (the stage turns the other way)")
    if r.correct_jitter:
        print("  jitter       each projection's shift off the ideal rotation measured and undone")
    if r.correct_tilt:
        print("  tilt         the rotation axis's lean found in bands of rows and each projection turned upright")
    if r.pad_columns != "auto":
        print(f"  field        {'never padded' if not r.pad_columns else f'{r.pad_columns} columns padded per side'}"
              " (a sample wider than the field of view)")
    print(f"  chunks       {cfg.rows_per_chunk} rows per unit")
    print(f"  output       {exp.store_path} ({store_outlook(exp, len(files))})")
    print(f"  analysis     {'on, to ' + str(exp.analysis_out) if cfg.analysis.enabled else 'off'}")
    print(f"  executor     {cfg.executor.kind} on {cfg.executor.device}, "
          f"{cfg.executor.worker_threads()} thread(s) per worker"
          f"{'' if cfg.executor.threads_per_worker is not None else ' (threads_per_worker: null)'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("check", help="validate an experiment config (every problem at once)",
                              description=first_line(__doc__))
    p.add_argument("config", help="experiment config (YAML)")
    p.add_argument("--executor", choices=("local", "dask", "mpi"), default=None,
                   help="check as if run with this executor")
    p.set_defaults(func=run)
