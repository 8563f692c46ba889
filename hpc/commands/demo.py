"""``flytomo demo``: a whole synthetic heating experiment, end to end, on this machine.

Simulates the experiment (``flytomo simulate-experiment``), reconstructs every scan into one
store (``flytomo run``; modified MLEM by default), analyses it (crack volume fraction against
time and temperature) and compares the measured fractions with the truth. Rerunning with
the same --out resumes: the simulation and the done units are reused.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from hpc.commands import first_line


def _compare(table_csv: Path, truth_csv: Path) -> list[str]:
    import numpy as np
    import pandas as pd

    m = pd.read_csv(table_csv)
    t = pd.read_csv(truth_csv)
    j = m.merge(t[["scan_index", "crack_fraction"]].rename(columns={"crack_fraction": "truth"}), on="scan_index")
    j = j[j["status"] == "ok"]
    if len(j) < 3:
        return ["compare    too few analysed scans to compare with the truth"]
    r = float(np.corrcoef(j["crack_fraction"], j["truth"])[0, 1])
    return [f"truth      crack fraction measured {100 * j['crack_fraction'].min():.2f}..{100 * j['crack_fraction'].max():.2f}% "
            f"vs true {100 * j['truth'].min():.2f}..{100 * j['truth'].max():.2f}%; correlation r = {r:.3f}"]


def run(args: argparse.Namespace) -> int:
    from hpc.commands.run import add_executor_options, analysis_available, execute  # noqa: F401
    from hpc.config import apply_overrides, load_experiment, read_yaml
    from hpc.executors import make_executor
    from hpc.experiment_sim import SimSettings, simulate_experiment

    t0 = time.perf_counter()
    out = Path(args.out)
    config = out / "experiment.yaml"
    if config.is_file() and any((out / "raw").glob("scan_*.h5")):
        print(f"demo: reusing the simulated experiment in {out}")
    else:
        s = SimSettings(size=args.size, n_scans=args.scans, seed=args.seed, method=args.method)
        sim = simulate_experiment(out, s, progress=not args.no_progress)
        print(f"demo: simulated {args.scans} scans of {args.size}³ px in {sim.seconds:.1f} s → {out / 'raw'}")
    t_sim = time.perf_counter() - t0
    raw = apply_overrides(read_yaml(config), executor=args.executor, device=args.device, workers=args.workers,
                          scheduler_address=args.scheduler_address, scheduler_file=args.scheduler_file)
    if raw.get("executor", {}).get("kind") == "mpi":
        from recon.errors import FlytomoError
        raise FlytomoError("--executor", "the demo runs local or dask; for MPI use "
                                         f"mpiexec -n N flytomo run {config} --executor mpi")
    exp = load_experiment(config, raw)
    with make_executor(exp.config.executor) as executor:
        code = execute(exp, executor, args)
    wall = time.perf_counter() - t0
    print("-" * 72)
    print(f"demo       {wall:.1f} s in all ({t_sim:.1f} s simulation)")
    print(f"config     {config}")
    print(f"store      {exp.store_path}")
    res = getattr(args, "_result", {})
    if "analysis" in res:
        print(f"table      {res['analysis']['table']}")
        for v in res["analysis"]["plots"].values():
            print(f"plot       {v}")
        for line in _compare(Path(res["analysis"]["table"]), out / "truth" / "crack_fraction.csv"):
            print(line)
    elif not analysis_available():
        print("analysis   not installed (the analysis package is missing)")
    print(f"truth      {out / 'truth'}")
    return code


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="simulate, reconstruct and analyse a heating experiment",
                              description=first_line(__doc__))
    p.add_argument("--out", default="flytomo-demo", help="demo folder (default ./flytomo-demo)")
    p.add_argument("--size", type=int, default=64, help="voxels per side of the simulated volumes")
    p.add_argument("--scans", type=int, default=24, help="fly-scans in the heating experiment")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated particle and noise")
    p.add_argument("--method", default="mlem-flyscan", choices=("fbp", "mlem", "mlem-flyscan", "rrdb"),
                   help="reconstruction method")
    from hpc.commands.run import add_executor_options

    add_executor_options(p)
    p.add_argument("--restart", action="store_true", help="discard an existing store and start over")
    p.add_argument("--no-analysis", action="store_true", help="reconstruct only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--summary-json", default=None, metavar="FILE", help="write the run summary as JSON")
    p.set_defaults(func=run)
