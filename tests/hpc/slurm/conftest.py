"""A real one-node Slurm cluster on localhost, for the tests marked ``slurm``.

The session fixture ``slurm_cluster`` installs Slurm and munge with
``scripts/install-slurm.sh`` when they are missing (root only; otherwise the tests skip
and say why), then starts munged, slurmctld and slurmd with a configuration of its own
in a temporary folder (ports chosen free, state and spool in that folder), exports
``SLURM_CONF`` for the client commands, waits until ``sinfo`` shows the node idle, and
at the end cancels what is left and stops the daemons it started (by their pids).

Set ``FLYTOMO_NO_SLURM=1`` to skip these tests.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
INSTALL = REPO / "scripts" / "install-slurm.sh"
SBIN = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN:
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _real_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return max(256, int(int(line.split()[1]) / 1024 * 0.8))
    return 1024


class LocalSlurm:
    """A running one-node Slurm: its folder, its config and helpers to use it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.cpus = os.cpu_count() or 1
        self.pids: dict[str, int] = {}

    # -- set-up -----------------------------------------------------------------------
    def write_config(self) -> None:
        r = self.root
        for sub in ("munge", "state", "spool", "log", "run"):
            (r / sub).mkdir(exist_ok=True)
        self.conf.write_text("\n".join([
            "ClusterName=flytomo-test",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={r}/munge/munge.socket",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool/slurmd-%n",
            f"SlurmctldPidFile={r}/run/slurmctld.pid",
            f"SlurmdPidFile={r}/run/slurmd-%n.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log",
            f"SlurmdLogFile={r}/log/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=pmi2",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=2",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "ReturnToService=2",
            "MinJobAge=3600",  # keep finished jobs visible to scontrol (no accounting here)
            "SlurmdParameters=config_overrides",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            "KillWait=5",
            "MessageTimeout=20",
            (f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} "
             f"RealMemory={_real_memory_mb()} State=UNKNOWN"),
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def start(self) -> None:
        r = self.root
        self.write_config()
        # munged: the key in a private folder, the socket in one everyone can traverse
        keydir = r / "munge-key"
        keydir.mkdir(mode=0o700, exist_ok=True)
        key = keydir / "munge.key"
        if not key.exists():
            subprocess.run([_which("mungekey") or "mungekey", "-c", "-b", "1024", "-k", str(key)],
                           check=True, capture_output=True)
            key.chmod(0o400)
        for d in (r, r / "munge"):
            d.chmod(0o755)
        subprocess.run([_which("munged"), f"--key-file={key}", f"--socket={r}/munge/munge.socket",
                        f"--pid-file={r}/munge/munged.pid", f"--log-file={r}/munge/munged.log",
                        f"--seed-file={r}/munge/munged.seed"],
                       check=True, capture_output=True, text=True)
        self.pids["munged"] = self._read_pid(r / "munge" / "munged.pid")
        env = self.env()
        # -i: ignore saved state of an earlier run of this folder
        subprocess.run([_which("slurmctld"), "-f", str(self.conf), "-i"], check=True, env=env,
                       capture_output=True, text=True)
        self.pids["slurmctld"] = self._read_pid(r / "run" / "slurmctld.pid")
        subprocess.run([_which("slurmd"), "-f", str(self.conf), "-N", "localhost"], check=True,
                       env=env, capture_output=True, text=True)
        self.pids["slurmd"] = self._read_pid(r / "run" / "slurmd-localhost.pid")
        self.wait_idle()

    @staticmethod
    def _read_pid(path: Path, timeout: float = 15) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                return int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                time.sleep(0.1)
        raise RuntimeError(f"{path}: no pid file after {timeout}s")

    def wait_idle(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        state = ""
        while time.monotonic() < end:
            p = self.run(["sinfo", "-h", "-n", "localhost", "-o", "%T"], check=False)
            state = p.stdout.strip()
            if state.startswith("idle"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"slurm node not idle after {timeout}s (state {state!r}); logs:\n"
                           + self.logs())

    def stop(self) -> None:
        if "slurmctld" in self.pids:
            self.run(["scancel", "--user", str(os.getuid())], check=False)
            for _ in range(30):  # let slurmd end the job steps before it goes
                p = self.run(["squeue", "-h", "-o", "%i"], check=False)
                if p.returncode != 0 or not p.stdout.strip():
                    break
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # -- use --------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        env.update(extra)
        return env

    def run(self, argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("env", self.env())
        return subprocess.run(argv, capture_output=True, text=True, check=check, **kw)

    def sbatch(self, *args: str, cwd: Path | None = None) -> str:
        p = self.run(["sbatch", "--parsable", *args], cwd=cwd)
        return p.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (empty when Slurm no longer knows the job)."""
        p = self.run(["scontrol", "show", "job", "-o", str(job_id)], check=False)
        fields = {}
        for token in p.stdout.split():
            if "=" in token:
                k, v = token.split("=", 1)
                fields.setdefault(k, v)
        return fields

    def state(self, job_id: str) -> str:
        return self.job(job_id).get("JobState", "UNKNOWN")

    def wait(self, job_id: str, timeout: float = 300, states=FINAL_STATES) -> str:
        end = time.monotonic() + timeout
        state = "UNKNOWN"
        while time.monotonic() < end:
            state = self.state(job_id)
            if state in states:
                return state
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} still {state} after {timeout}s\n"
                           + self.run(["squeue"], check=False).stdout)

    def logs(self) -> str:
        out = []
        for p in sorted((self.root / "log").glob("*.log")):
            out.append(f"--- {p.name}\n" + "\n".join(p.read_text().splitlines()[-20:]))
        return "\n".join(out)


def _skip_reason() -> str | None:
    if os.environ.get("FLYTOMO_NO_SLURM"):
        return "FLYTOMO_NO_SLURM is set"
    have = all(_which(n) for n in ("slurmctld", "slurmd", "sbatch", "munged"))
    if have:
        return None
    if os.name != "posix" or os.geteuid() != 0:
        return "Slurm is not installed and installing it (scripts/install-slurm.sh) needs root"
    if not shutil.which("apt-get"):
        return "Slurm is not installed and there is no apt-get to install it"
    p = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        return f"scripts/install-slurm.sh failed: {(p.stderr or p.stdout).strip()[-300:]}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    """A started :class:`LocalSlurm`; ``SLURM_CONF`` is exported while it lives."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("the test cluster runs its daemons as root (SlurmUser=root); not root")
    root = Path(tempfile.mkdtemp(prefix="flytomo-slurm-"))
    cluster = LocalSlurm(root)
    old = os.environ.get("SLURM_CONF")
    try:
        try:
            cluster.start()
        except (subprocess.CalledProcessError, RuntimeError) as err:
            cluster.stop()
            detail = getattr(err, "stderr", "") or ""
            pytest.fail(f"could not start the test Slurm: {err} {detail}\n{cluster.logs()}")
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def slurm(slurm_cluster):
    """The session cluster, checked idle before each test (no job left from the last)."""
    slurm_cluster.run(["scancel", "--user", str(os.getuid())], check=False)
    slurm_cluster.wait_idle(timeout=120)
    return slurm_cluster


# ------------------------------------------------------------------ flytomo fixtures
#: this checkout's flytomo: the console script next to the interpreter running the tests
FLYTOMO = Path(os.path.abspath(sys.executable)).parent / "flytomo"


def flytomo(*args: str, env: dict | None = None, cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run this checkout's ``flytomo`` (the venv's console script) and capture its output."""
    if FLYTOMO.is_file():
        argv = [str(FLYTOMO), *args]
    else:
        argv = [sys.executable, "-m", "hpc.cli", *args]
    p = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"flytomo {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def make_experiment(folder: Path, size: int = 32, scans: int = 3) -> Path:
    """``flytomo simulate-experiment`` into ``folder``; returns its config."""
    flytomo("simulate-experiment", str(folder), "--size", str(size), "--scans", str(scans),
            "--quiet")
    config = folder / "experiment.yaml"
    assert config.is_file()
    return config


def read_store(config: Path):
    """Array ``0`` of the experiment store of ``config``, as numpy."""
    import zarr

    from hpc.config import load_experiment

    store = load_experiment(config).store_path
    return zarr.open_group(str(store), mode="r")["0"][:]


@pytest.fixture(scope="session")
def demo_experiment(tmp_path_factory) -> Path:
    """A 32³, 3-scan synthetic heating experiment (never run: tests copy it)."""
    return make_experiment(tmp_path_factory.mktemp("demo") / "exp", size=32, scans=3).parent


@pytest.fixture(scope="session")
def reference_volumes(demo_experiment, tmp_path_factory):
    """The demo experiment's store as ``flytomo run --executor local`` writes it."""
    ref = tmp_path_factory.mktemp("reference") / "exp"
    shutil.copytree(demo_experiment, ref)
    flytomo("run", str(ref / "experiment.yaml"), "--executor", "local", "--no-analysis",
            "--no-progress")
    return read_store(ref / "experiment.yaml")
