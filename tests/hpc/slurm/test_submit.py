"""``flytomo submit`` on a real one-node Slurm: MPI ranks, Dask worker jobs, resume.

Each test copies the demo experiment, submits it with the ``flytomo`` command (as a user
would), waits for the jobs, and compares the store with a local run's.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from .conftest import flytomo, make_experiment, read_store

pytestmark = pytest.mark.slurm

#: a config path with spaces, quotes and command substitutions: none may ever run
HOSTILE = "exp dir 'q\" $(touch pwned) `touch pwned2` ; touch pwned3"
SUBMITTED = re.compile(r"submitted reconstruction job (\d+) and analysis job (\d+)")
UNITS = re.compile(r"units\s+(\d+) total: (\d+) done now, (\d+) already done, (\d+) failed")


def _submit(slurm, config: Path, *args: str) -> tuple[str, str, str]:
    """Submit with the CLI; return (recon job, analysis job, printed text)."""
    p = flytomo("submit", str(config), "--no-container", *args, env=slurm.env(),
                cwd=config.parent.parent)
    m = SUBMITTED.search(p.stdout)
    assert m, p.stdout
    return m.group(1), m.group(2), p.stdout


def _log(config: Path, kind: str, job: str) -> str:
    path = config.parent / "slurm" / f"{kind}-{job}.out"
    return path.read_text() if path.exists() else f"({path} missing)"


def _assert_no_pwned(*roots: Path) -> None:
    for root in roots:
        for name in ("pwned", "pwned2", "pwned3"):
            assert not (root / name).exists(), f"{root / name} was created"


def _edit_config(config: Path, **changes) -> None:
    data = yaml.safe_load(config.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def _check_analysis(config: Path) -> None:
    out = config.parent / "analysis"
    assert (out / "crack_table.csv").is_file()
    assert (out / "crack_table.parquet").is_file()
    assert list(out.glob("*.png"))


def test_submit_mpi_matches_local_run(slurm, demo_experiment, reference_volumes, tmp_path):
    """2 MPI ranks through srun --mpi=pmi2, from a folder named to break a careless script; the
    scripts written with --write-only first and submitted by the submit.sh written beside them
    (the other tests submit with flytomo submit itself)."""
    exp = tmp_path / HOSTILE
    shutil.copytree(demo_experiment, exp)
    config = exp / "experiment.yaml"
    t0 = time.monotonic()
    args = ("--executor", "mpi", "--ntasks-per-node", "2", "--time", "10")
    text = flytomo("submit", str(config), "--no-container", *args, "--write-only", env=slurm.env(),
                   cwd=config.parent.parent).stdout
    assert "nothing submitted" in text and not slurm.run(["squeue", "-h", "-o", "%i"]).stdout.strip()
    p = subprocess.run(["bash", str(exp / "slurm" / "submit.sh")], capture_output=True, text=True, env=slurm.env(),
                       cwd=tmp_path, check=True)
    recon, analysis = SUBMITTED.fullmatch(p.stdout.strip()).groups()
    assert slurm.state(analysis) in ("PENDING", "RUNNING", "COMPLETED")
    assert slurm.wait(recon, timeout=300) == "COMPLETED", _log(config, "recon", recon)
    assert slurm.wait(analysis, timeout=300) == "COMPLETED", _log(config, "analyze", analysis)
    elapsed = time.monotonic() - t0
    log = _log(config, "recon", recon)
    assert "mpi (2 ranks" in log, log
    m = UNITS.search(log)
    assert m and m.group(1) == m.group(2) and m.group(4) == "0", log
    assert f"reconstruct: {m.group(1)} units, 0 already done" in log, log  # a log file gets progress lines
    np.testing.assert_array_equal(read_store(config), reference_volumes)
    _check_analysis(config)
    for script in (exp / "slurm").glob("*.sbatch"):
        assert "#SBATCH --requeue" in script.read_text()
        subprocess.run(["bash", "-n", str(script)], check=True)
    _assert_no_pwned(tmp_path, exp, exp / "slurm", Path.cwd())
    print(f"mpi submission: jobs {recon} (recon) and {analysis} (analysis), {elapsed:.1f} s")


def test_submit_dask_matches_local_run(slurm, demo_experiment, reference_volumes, tmp_path):
    """The Dask driver job starts a SLURMCluster (interface lo) whose worker is a Slurm job."""
    exp = tmp_path / "dask exp"
    shutil.copytree(demo_experiment, exp)
    config = exp / "experiment.yaml"
    _edit_config(config, **{"executor.dask.jobqueue": {"jobs": 1, "cores": 1, "memory": "2GB",
                                                         "interface": "lo"}})
    recon, analysis, text = _submit(slurm, config, "--executor", "dask", "--dask-interface", "lo")
    assert f"squeue -j {recon},{analysis}" in text and str(exp / "slurm") in text
    assert slurm.wait(recon, timeout=300) == "COMPLETED", _log(config, "recon", recon)
    assert slurm.wait(analysis, timeout=300) == "COMPLETED", _log(config, "analyze", analysis)
    log = _log(config, "recon", recon)
    assert "SLURMCluster" in log, log
    workers = list((exp / "slurm" / "dask-workers").glob("*.err"))
    assert workers, "no dask worker job log: the workers did not run as Slurm jobs"
    np.testing.assert_array_equal(read_store(config), reference_volumes)
    _check_analysis(config)


def test_dask_without_jobqueue_is_refused(slurm, demo_experiment, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(demo_experiment, exp)
    p = flytomo("submit", str(exp / "experiment.yaml"), "--executor", "dask", check=False,
                env=slurm.env())
    assert p.returncode == 2
    assert "executor.dask.jobqueue" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (exp / "slurm").exists()


@pytest.fixture(scope="module")
def slow_experiment(tmp_path_factory):
    """48³, 4 scans, 4 rows a unit, 150 iterations: 48 units of a fraction of a second,
    slow enough to cancel a job in the middle; and its store from a local run."""
    folder = tmp_path_factory.mktemp("slow") / "exp"
    config = make_experiment(folder, size=48, scans=4)
    _edit_config(config, rows_per_chunk=4, **{"reconstruction.iterations": 150})
    ref = folder.parent / "reference"
    shutil.copytree(folder, ref)
    flytomo("run", str(ref / "experiment.yaml"), "--executor", "local", "--no-analysis",
            "--no-progress")
    return folder, read_store(ref / "experiment.yaml")


def _wait_markers(manifest: Path, at_least: int, job: str, slurm, timeout: float = 300) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        n = len(list(manifest.glob("t*"))) if manifest.is_dir() else 0
        if n >= at_least:
            return n
        assert slurm.state(job) in ("PENDING", "RUNNING", "CONFIGURING"), slurm.job(job)
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {at_least} units done after {timeout}s")


def test_scancel_then_resubmit_resumes(slurm, slow_experiment, tmp_path):
    folder, reference = slow_experiment
    exp = tmp_path / "exp"
    shutil.copytree(folder, exp)
    config = exp / "experiment.yaml"
    manifest = read_manifest_dir(config)
    recon, analysis, _ = _submit(slurm, config, "--ntasks-per-node", "2")
    _wait_markers(manifest, 3, recon, slurm)
    slurm.run(["scancel", recon])
    assert slurm.wait(recon, timeout=60) == "CANCELLED"
    # the analysis job starts after the reconstruction ends, whatever the end, and analyses
    # only after one that finished by itself: here it says why not and fails
    assert slurm.wait(analysis, timeout=120) == "FAILED", _log(config, "analyze", analysis)
    assert (f"reconstruction job {recon} did not finish (cancelled, over its time limit, or its node "
            "failed" in _log(config, "analyze", analysis))
    assert not (exp / "analysis" / "crack_table.csv").exists()
    done_before = len(list(manifest.glob("t*")))
    total = 48
    assert 3 <= done_before < total, "the job finished before it could be cancelled"

    recon2, analysis2, _ = _submit(slurm, config, "--ntasks-per-node", "2")
    assert slurm.wait(recon2, timeout=300) == "COMPLETED", _log(config, "recon", recon2)
    assert slurm.wait(analysis2, timeout=300) == "COMPLETED", _log(config, "analyze", analysis2)
    m = UNITS.search(_log(config, "recon", recon2))
    assert m, _log(config, "recon", recon2)
    n_total, now, already, failed = map(int, m.groups())
    assert n_total == total and failed == 0
    assert already >= done_before and now == total - already < total  # fewer recomputed
    np.testing.assert_array_equal(read_store(config), reference)
    _check_analysis(config)


def test_the_time_limit_warning_requeues_the_job_which_resumes(slurm, slow_experiment, tmp_path):
    """Slurm signals the batch shell ``REQUEUE_MARGIN_S`` before the time limit
    (``--signal=B:USR1@...``; here ``scancel --batch --signal=USR1``, the same delivery): the
    script runs ``scontrol requeue`` (what a node failure or preemption does too): same job id,
    restart 1, the units done are kept, and the analysis waits for the requeued job."""
    folder, reference = slow_experiment
    exp = tmp_path / "exp"
    shutil.copytree(folder, exp)
    config = exp / "experiment.yaml"
    manifest = read_manifest_dir(config)
    recon, analysis, _ = _submit(slurm, config, "--ntasks-per-node", "2")
    _wait_markers(manifest, 3, recon, slurm)
    slurm.run(["scancel", "--batch", "--signal=USR1", recon])
    # a requeued job is held back (BeginTime, about 2 min) once it is pending again: make
    # it eligible now, so the test does not wait for that
    end = time.monotonic() + 60
    while time.monotonic() < end and slurm.state(recon) != "PENDING":
        time.sleep(0.2)
    slurm.run(["scontrol", "update", f"JobId={recon}", "StartTime=now"], check=False)
    assert slurm.wait(recon, timeout=300) == "COMPLETED", _log(config, "recon", recon)
    assert slurm.wait(analysis, timeout=300) == "COMPLETED", _log(config, "analyze", analysis)
    log = _log(config, "recon", recon)
    assert "the time limit is near" in log and "job requeued (start 2 of at most 6)" in log, log
    assert "restart 1" in log, log  # --open-mode=append kept the first attempt's lines
    m = UNITS.search(log.split("restart 1", 1)[1])
    assert m, log
    n_total, now, already, failed = map(int, m.groups())
    assert already >= 3 and now < n_total and failed == 0
    np.testing.assert_array_equal(read_store(config), reference)


def read_manifest_dir(config: Path) -> Path:
    from hpc.config import load_experiment

    return load_experiment(config).store_path / ".flytomo" / "manifest"


def test_a_scan_still_being_written_leaves_the_others_to_the_analysis_job(slurm, demo_experiment, tmp_path):
    """A scan still being written (half its frames, written just now) is left to a later run:
    ``flytomo run`` exits 3, the job ends FAILED as Slurm reads it, and the analysis job (an
    ``afterok`` one was cancelled: session 44's open item) analyses the scans done."""
    import pandas as pd

    exp = tmp_path / "exp"
    shutil.copytree(demo_experiment, exp)
    config = exp / "experiment.yaml"
    last = sorted((exp / "raw").glob("scan_*.h5"))[-1]
    whole = tmp_path / "whole.h5"
    shutil.copy(last, whole)
    _first_frames(whole, last, 0.5)
    recon, analysis, _ = _submit(slurm, config)
    assert slurm.wait(recon, timeout=300) == "FAILED", _log(config, "recon", recon)
    assert slurm.wait(analysis, timeout=300) == "COMPLETED", _log(config, "analyze", analysis)
    log = _log(config, "recon", recon)
    assert "scans still being written were left to a later run (above): the analysis job takes the others" in log
    assert (exp / "slurm" / f"recon-{recon}.exit").read_text().strip() == "3"
    status = pd.read_csv(exp / "analysis" / "crack_table.csv")["status"].tolist()
    assert status[:-1] == ["ok"] * (len(status) - 1) and status[-1].startswith("not reconstructed: holds"), status


def _first_frames(src: Path, dst: Path, share: float) -> None:
    """``dst``: the FXI scan ``src`` as it stood when ``share`` of its projections were written."""
    import h5py

    with h5py.File(src) as a, h5py.File(dst, "w") as b:
        keep = slice(int(len(a["angle"]) * share))
        for name, obj in a.items():
            b[name] = obj[keep] if name in ("img_tomo", "angle") else obj[()]
        b.attrs.update(a.attrs)
