"""``flytomo run CONFIG``: reconstruct a whole experiment into one store, resumably, then analyse it.

Runs every unit (scan, rows) not yet done on the executor the config names (or
``--executor``): ``local`` (this process), ``dask`` (a LocalCluster, a scheduler, or Slurm
jobs) or ``mpi`` (start with ``mpiexec -n N flytomo run CONFIG --executor mpi``; rank 0
coordinates, ranks 1..N−1 work). Rerunning the same command redoes only what is not done
(also after a crash or a kill) and retries failed units. Progress bar on stderr, a run log
next to the store, a summary at the end.

Exit codes: 0 every unit done (and the analysis, when enabled, written); 1 some units
failed (the others are on disk; rerun to retry only those) or the analysis failed; 2 bad
input found before starting (config, temperature log, no readable scan, store made with
other settings, store locked by another run).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hpc.commands import exit_on_sigterm, first_line, mpi_rank, mpi_ranks


def analyze(exp: Any, executor: Any = None) -> Any:
    """Run the analysis stage on a complete store (``executor.map`` spreads the time points);
    an analysis already made from the same inputs is kept (a finished experiment polled)."""
    from analysis.run import analyze_store

    a = exp.config.analysis
    return analyze_store(exp.store_path, exp.temperature_log, exp.analysis_out,
                         params=a.segmentation or None,
                         map_fn=None if executor is None else executor.map, extrapolate=a.extrapolate,
                         timezone=exp.config.timezone, if_changed=True,
                         log_start=exp.config.temperature_log_start)


def analysis_available() -> bool:
    try:
        import analysis.run  # noqa: F401
    except ImportError:
        return False
    return True


def _rerun_for(summary: Any) -> str:
    """What running the same command again does for an incomplete store."""
    if summary.failed and summary.waiting_scans:
        return "retry the failed units and take the scans still being written"
    return "retry the failed units" if summary.failed else "take the scans still being written"


def execute(exp: Any, executor: Any, args: argparse.Namespace) -> int:
    """Reconstruct (and analyse) ``exp`` on ``executor``; print the summary; return the exit code."""
    from hpc.engine import run_experiment

    want = exp.config.analysis.enabled and not getattr(args, "no_analysis", False)
    summary = run_experiment(exp, executor, restart=getattr(args, "restart", False),
                             progress=not getattr(args, "no_progress", False), analysis_follows=want,
                             redo=getattr(args, "redo", None) or ())
    for line in summary.lines():
        print(line)
    code = summary.exit_code
    result = {"run": summary.to_dict()}
    some = summary.skipped + summary.done > 0  # scans failed beside scans done (one still being written):
    if want and (summary.complete or some) and analysis_available():  # those done are analysed, the rest marked
        from recon.errors import NO_ROOM_ERRNOS, FlytomoError

        try:
            out = analyze(exp, executor)
            ok = int((out.table["status"] == "ok").sum())
            kept = " (up to date: no scan, log or setting changed since it was written)" if out.up_to_date else ""
            print(f"analysis   {len(out.table)} time points ({ok} ok) → {out.csv}{kept}"
                  + ("" if summary.complete else "; the store is incomplete: scans not reconstructed are marked in "
                                                  f"the status column (rerun to {_rerun_for(summary)})"))
            for path in out.plots.values():
                print(f"  plot     {path}")
            result["analysis"] = {"table": str(out.csv), "parquet": str(out.parquet),
                                  "plots": {k: str(v) for k, v in out.plots.items()}}
        except FlytomoError as err:
            print(f"analysis   failed: {err}", file=sys.stderr)
            code = max(code, 1)
        except OSError as err:  # a full disk under the analysis folder: the volumes are done, the analysis not
            if err.errno not in NO_ROOM_ERRNOS:
                raise
            print(f"analysis   failed: {exp.analysis_out}: {err.strerror} (the earlier analysis there, if any, is "
                  "kept whole); make room and run the same command again", file=sys.stderr)
            code = max(code, 1)
    elif want and not summary.complete:
        print(f"analysis   skipped: nothing is reconstructed yet (rerun to {_rerun_for(summary)})")
    if getattr(args, "summary_json", None):
        Path(args.summary_json).write_text(json.dumps(result, indent=2) + "\n")
    args._result = result
    return code


def run(args: argparse.Namespace) -> int:
    from hpc.engine import resume_hint

    exit_on_sigterm(resume_hint(args.restart))  # the lock is released
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C: the lock is released; say how to go on, as SIGTERM does
        if mpi_rank() == 0:  # Ctrl-C reaches every rank of mpiexec: said once
            print(f"flytomo: interrupted: {resume_hint(args.restart)}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from hpc.config import apply_overrides, load_experiment, read_yaml
    from hpc.executors import make_executor
    from recon.errors import FlytomoError

    raw = apply_overrides(read_yaml(args.config), executor=args.executor, device=args.device,
                          workers=args.workers, scheduler_address=args.scheduler_address,
                          scheduler_file=args.scheduler_file, threads=args.threads)
    ex_raw = raw.get("executor") if isinstance(raw.get("executor"), dict) else {}
    if ex_raw.get("kind") != "mpi" and (n := mpi_ranks()) > 1:  # each copy would race for the lock
        raise FlytomoError(args.config, f"started as {n} MPI ranks (mpirun/srun) but executor.kind is "
                                        f"{ex_raw.get('kind') or 'local'}: add --executor mpi, or run one copy")
    if ex_raw.get("kind") == "mpi":
        from hpc.config import MPI_MISSING
        from hpc.executors.mpi import MpiExecutor, rank, worker_loop

        try:  # without it rank() is 0 on every copy: refuse first
            import mpi4py  # noqa: F401
        except ImportError:
            raise FlytomoError(args.config, f"executor.kind: {MPI_MISSING}") from None

        if rank() != 0:
            worker_loop()
            return 0
        executor = MpiExecutor(threads=ex_raw.get("threads_per_worker") or 1)
        try:  # whatever happens on rank 0, the workers are told to stop
            exp = load_experiment(args.config, raw)
            return execute(exp, executor, args)
        finally:
            executor.close()
    exp = load_experiment(args.config, raw)
    with make_executor(exp.config.executor) as executor:
        return execute(exp, executor, args)


def add_executor_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("executor (override the config)")
    g.add_argument("--executor", choices=("local", "dask", "mpi"), default=None,
                   help="engine (default: the config's executor.kind)")
    g.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where each worker reconstructs (default: the config's executor.device)")
    g.add_argument("--workers", type=int, default=None, metavar="N", help="Dask LocalCluster workers")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads in each worker or rank (executor.threads_per_worker)")
    g.add_argument("--scheduler-address", default=None, metavar="ADDR", help="a running Dask scheduler")
    g.add_argument("--scheduler-file", default=None, metavar="FILE", help="Dask scheduler file (dask-mpi)")


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="reconstruct (and analyse) a whole experiment, resumably",
                              description=first_line(__doc__),
                              epilog="exit codes: 0 done, 1 some units failed, 2 bad input, 3 none failed but "
                                     "scans still being written were left to a later run",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="experiment config (YAML)")
    add_executor_options(p)
    p.add_argument("--restart", action="store_true", help="discard an existing store and start over")
    p.add_argument("--redo", action="append", default=None, metavar="SCAN",
                   help="survey this scan again (its file name, e.g. scan_0007.h5) and reconstruct it into the "
                        "existing store, the others kept (a file restored or replaced since); repeat for more")
    p.add_argument("--no-analysis", action="store_true", help="reconstruct only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--summary-json", default=None, metavar="FILE", help="write the run summary as JSON")
    p.set_defaults(func=run)
