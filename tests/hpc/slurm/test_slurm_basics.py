"""The test cluster itself, and the plumbing of ``flytomo submit`` on it without flytomo's
engine: a batch job, MPI ranks over PMI2 with mpi4py, an afterok dependency."""
from __future__ import annotations

import sys
import textwrap

import pytest

pytestmark = pytest.mark.slurm

def test_wrap_job_runs(slurm, tmp_path):
    job = slurm.sbatch("--wrap", "echo hello from $SLURM_JOB_ID; echo conf=$SLURM_CONF",
                       f"--output={tmp_path}/wrap-%j.out")
    assert slurm.wait(job, timeout=60) == "COMPLETED"
    text = (tmp_path / f"wrap-{job}.out").read_text()
    assert f"hello from {job}" in text
    assert f"conf={slurm.conf}" in text  # SLURM_CONF reaches the job


def test_srun_pmi2_runs_mpi4py_ranks(slurm, tmp_path):
    script = tmp_path / "mpi.sbatch"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/bash
        #SBATCH --ntasks=2
        #SBATCH --output=mpi-%j.out
        srun --mpi=pmi2 {sys.executable} -c "from mpi4py import MPI; c = MPI.COMM_WORLD; \\
        print('rank', c.rank, 'of', c.size, flush=True); c.Barrier()"
        """))
    job = slurm.sbatch(str(script), cwd=tmp_path)
    assert slurm.wait(job, timeout=120) == "COMPLETED", (tmp_path / f"mpi-{job}.out").read_text()
    text = (tmp_path / f"mpi-{job}.out").read_text()
    assert "rank 0 of 2" in text and "rank 1 of 2" in text


def test_afterok_dependency_waits_and_cancels_on_failure(slurm, tmp_path):
    bad = slurm.sbatch("--wrap", "sleep 2; exit 3", f"--output={tmp_path}/bad.out")
    after = slurm.sbatch(f"--dependency=afterok:{bad}", "--kill-on-invalid-dep=yes",
                         "--wrap", "echo should-not-run", f"--output={tmp_path}/after.out")
    assert slurm.state(after) == "PENDING"
    assert slurm.wait(bad, timeout=60) == "FAILED"
    assert slurm.wait(after, timeout=60) == "CANCELLED"
    assert not (tmp_path / "after.out").exists()


def test_a_lock_of_a_slurm_job_that_ended_on_another_node_is_stale_at_once(slurm, tmp_path):
    """A blind probe: a job killed on one node left its lock; the resubmitted job, landing on
    another node within 300 s, was refused as if the first still ran. The lock names its Slurm
    job: squeue (SLURM_CONF is the test cluster's) says whether it still runs."""
    import json

    from hpc.manifest import RunLock
    from recon.errors import FlytomoError

    lock = tmp_path / "s.zarr" / ".flytomo" / "lock"
    lock.parent.mkdir(parents=True)
    live = slurm.sbatch("--wrap", "sleep 120", f"--output={tmp_path}/live.out")
    ended = slurm.sbatch("--wrap", "true", f"--output={tmp_path}/ended.out")
    try:
        assert slurm.wait(ended, timeout=60) == "COMPLETED"
        assert slurm.wait(live, timeout=60, states=("RUNNING",)) == "RUNNING"
        for job in (live, ended):  # both locks fresh, from another host
            lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 0, "slurm_job_id": job}))
            if job == live:
                with pytest.raises(FlytomoError, match="host elsewhere"):
                    RunLock(tmp_path / "s.zarr").acquire()
            else:  # its job ended: taken over at once
                RunLock(tmp_path / "s.zarr").acquire().release()
                assert not lock.exists()
    finally:
        slurm.run(["scancel", live], check=False)
