"""Fixtures for the batch-engine tests: one small simulated heating experiment (32 px, 4 scans)
shared by the session, configs that point at it, and a reference store from the local executor."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import yaml

from tests.cli import cli_in_process

REPO = Path(__file__).resolve().parents[2]
SIZE, SCANS, ROWS = 32, 4, 8  # 4 scans × 4 chunks = 16 units


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    """A simulated experiment (hpc.experiment_sim) with SCANS scans of SIZE³ px."""
    from hpc.experiment_sim import SimSettings, simulate_experiment

    folder = tmp_path_factory.mktemp("sim")
    return simulate_experiment(folder, SimSettings(size=SIZE, n_scans=SCANS, seed=3, method="fbp",
                                                   rows_per_chunk=ROWS))


def write_config(folder: Path, sim, **changes) -> Path:
    """``folder/experiment.yaml`` reading ``sim``'s scans (copied to folder/raw when
    ``copy_raw``), fbp, store ``folder/store.zarr``; ``changes`` are top-level keys
    (``executor`` and ``reconstruction`` dicts are merged)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = sim.folder / "raw"
    if changes.pop("copy_raw", False):
        shutil.copytree(raw, folder / "raw", dirs_exist_ok=True)
        raw = folder / "raw"
    cfg = yaml.safe_load(sim.config.read_text())
    cfg["scans"] = str(raw / "scan_*.h5")
    cfg["temperature_log"] = str(raw / "temperature.csv")
    cfg["output"] = "store.zarr"
    cfg["analysis"]["enabled"] = False
    cfg["reconstruction"]["method"] = "fbp"
    # the simulated axis is the detector's middle: one geometry for every scan (the default,
    # a center found per scan, differs by noise from scan to scan)
    cfg["reconstruction"]["center"] = "middle"
    # one torch thread everywhere: the executors' volumes are compared bit for bit, and the
    # rounding of some torch kernels (the FFT) depends on the threads
    cfg.setdefault("executor", {})["threads_per_worker"] = 1
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def read_store(path: Path) -> np.ndarray:
    import zarr

    return zarr.open_array(str(path / "0"), mode="r")[:]


def flytomo(*args, env: dict | None = None, timeout: float = 180, mpi: int | None = None,
            process: bool = False):
    """Run ``flytomo ARGS``: in a subprocess of ``python -m hpc.cli`` (under ``mpiexec -n MPI``)
    where ``env``, ``mpi`` or ``process`` asks for one, else in this process (:func:`cli_in_process`)."""
    if not (env or mpi or process):
        return cli_in_process(*map(str, args))
    cmd = [sys.executable, "-m", "hpc.cli", *map(str, args)]
    if mpi:
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(mpi), *cmd]
    e = {**os.environ, **(env or {})}
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return subprocess.run(cmd, cwd=REPO, env=e, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def reference(sim, tmp_path_factory):
    """(config, volumes (t, z, y, x)) of an undisturbed local run of ``sim``."""
    from hpc.config import load_experiment
    from hpc.engine import run_experiment

    cfg = write_config(tmp_path_factory.mktemp("reference"), sim)
    summary = run_experiment(load_experiment(cfg), progress=False)
    assert summary.exit_code == 0 and summary.complete
    return cfg, read_store(cfg.parent / "store.zarr")


@contextmanager
def small_file_system(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's ``size=``: ``300k``, ``64m``) mounted on ``folder`` (made
    here) while the block runs: a real full or read-only disk (:func:`remount` changes it).
    Skips the test where it cannot be mounted (not root, or no mount rights)."""
    if os.geteuid() != 0:
        pytest.skip("a small file system needs mount rights (root)")
    folder.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "none", str(folder)],
                      capture_output=True).returncode:
        pytest.skip("no tmpfs can be mounted here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def remount(folder: Path, options: str) -> None:
    """Change a :func:`small_file_system` in place: ``ro``, or ``size=8m`` (room made)."""
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


