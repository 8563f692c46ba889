"""Scaling of the batch engine: slices/s with 1 and 2 workers for Dask and MPI on the same experiment.

For each executor and worker count the same simulated heating experiment is reconstructed
from scratch (``flytomo run --restart`` in a subprocess, so every run starts cold) and the
run summary is read back. Reported per run:

- slices/s            slices reconstructed / unit-phase wall time (first unit handed out to
                      last result; cluster start-up and the scan survey excluded, listed apart);
- efficiency          (slices/s with W workers) / (W × slices/s with 1 worker of the same executor);
- overhead            scheduling overhead as a fraction of unit time:
                      (W × unit-phase wall − Σ unit seconds) / Σ unit seconds
                      (idle workers, transfer, coordination; 0 = perfectly packed);
- peak RSS / worker   the largest ``ru_maxrss`` of a worker process (MiB), for an experiment
                      of ``--scans`` and of ``--big-scans`` scans: it should not grow with
                      the number of scans (workers stream units, nothing accumulates).

Usage::

    .venv/bin/python bench/scaling.py [--size 64] [--scans 10] [--big-scans 40]
        [--method mlem-flyscan] [--out bench/results/scaling.json] [--work DIR]

MPI runs use ``mpiexec -n W`` (every rank reconstructs; rank 0 also coordinates). Every worker uses one torch thread.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _simulate(folder: Path, size: int, scans: int, method: str) -> Path:
    from hpc.experiment_sim import SimSettings, simulate_experiment

    cfg = folder / "experiment.yaml"
    if not cfg.is_file():
        simulate_experiment(folder, SimSettings(size=size, n_scans=scans, seed=0, method=method))
    raw = yaml.safe_load(cfg.read_text())
    raw["analysis"]["enabled"] = False
    raw["reconstruction"]["method"] = method
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    return cfg


def _run(cfg: Path, executor: str, workers: int, out_json: Path) -> dict:
    cmd = [sys.executable, "-m", "hpc.cli", "run", str(cfg), "--restart", "--no-progress",
           "--executor", executor, "--summary-json", str(out_json)]
    if executor == "dask":
        cmd += ["--workers", str(workers)]
    if executor == "mpi":
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(workers), *cmd]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    total = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{r.stderr[-3000:]}")
    d = json.loads(out_json.read_text())["run"]
    d["process_wall_s"] = total
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--scans", type=int, default=10)
    ap.add_argument("--big-scans", type=int, default=40)
    ap.add_argument("--method", default="mlem-flyscan")
    ap.add_argument("--executors", default="dask,mpi")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "scaling.json"))
    ap.add_argument("--work", default=None, help="folder for the simulated experiments (kept; default temporary)")
    args = ap.parse_args(argv)

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="flytomo-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    small = _simulate(work / f"exp{args.scans}", args.size, args.scans, args.method)
    big = _simulate(work / f"exp{args.big_scans}", args.size, args.big_scans, args.method) if args.big_scans else None

    rows = []
    for ex in args.executors.split(","):
        base = None
        for w in (1, 2):
            d = _run(small, ex, w, work / f"{ex}{w}.json")
            rate = d["rows"] / d["units_wall_s"]
            base = rate if w == 1 else base
            overhead = (w * d["units_wall_s"] - d["sum_unit_s"]) / d["sum_unit_s"]
            rows.append({"executor": ex, "workers": w, "scans": args.scans, "units": d["total"],
                         "slices": d["rows"], "units_wall_s": d["units_wall_s"], "run_wall_s": d["wall_s"],
                         "process_wall_s": d["process_wall_s"], "slices_per_s": rate,
                         "efficiency": rate / (w * base), "overhead": overhead,
                         "mean_unit_s": d["mean_unit_s"], "build_s": d["build_seconds"],
                         "peak_rss_mib_per_worker": max(d["peak_rss_mb"].values())})
        if big is not None:
            d = _run(big, ex, 2, work / f"{ex}2big.json")
            rows.append({"executor": ex, "workers": 2, "scans": args.big_scans, "units": d["total"],
                         "slices": d["rows"], "units_wall_s": d["units_wall_s"], "run_wall_s": d["wall_s"],
                         "process_wall_s": d["process_wall_s"], "slices_per_s": d["rows"] / d["units_wall_s"],
                         "efficiency": None, "overhead": (2 * d["units_wall_s"] - d["sum_unit_s"]) / d["sum_unit_s"],
                         "mean_unit_s": d["mean_unit_s"], "build_s": d["build_seconds"],
                         "peak_rss_mib_per_worker": max(d["peak_rss_mb"].values())})

    head = f"{'executor':8} {'W':>2} {'scans':>5} {'slices/s':>9} {'eff.':>6} {'overhead':>9} " \
           f"{'unit s':>7} {'phase s':>8} {'total s':>8} {'peak MiB/worker':>16}"
    print(head)
    print("-" * len(head))
    for r in rows:
        eff = "" if r["efficiency"] is None else f"{r['efficiency']:.2f}"
        print(f"{r['executor']:8} {r['workers']:>2} {r['scans']:>5} {r['slices_per_s']:>9.1f} {eff:>6} "
              f"{100 * r['overhead']:>8.1f}% {r['mean_unit_s']:>7.3f} {r['units_wall_s']:>8.1f} "
              f"{r['process_wall_s']:>8.1f} {r['peak_rss_mib_per_worker']:>16.0f}")
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "loadavg_at_end": os.getloadavg()},
              "settings": {"size": args.size, "scans": args.scans, "big_scans": args.big_scans,
                           "method": args.method, "threads_per_worker": 1},
              "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
