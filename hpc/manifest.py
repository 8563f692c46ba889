"""What is done, what failed, and who is writing: marker files inside the store.

- ``STORE/.flytomo/manifest/t00003_z00016`` — unit (t=3, z0=16) is on disk. Written by the
  worker *after* its chunk is written and synced, atomically (temporary file, fsync,
  rename), so a marker never claims data that is not there. A rerun skips these units.
- ``STORE/.flytomo/failed/t00003_z00016`` — the unit failed; the JSON holds the reason.
  Written by the driver; a rerun retries these units and removes the marker.
- ``STORE/.flytomo/lock`` — the run writing the store (pid, host, start time). A second run
  refuses to start while it is held. The holder touches the file every ``HEARTBEAT_S``; a
  lock is stale — and taken over — when its pid is dead on this same host, when it was
  taken on another host and its heartbeat is older than ``STALE_S`` (a job killed on one
  node, resubmitted on another), or when it was taken by an earlier start of this same Slurm
  job (``SLURM_JOB_ID`` equal, ``SLURM_RESTART_COUNT`` lower: a requeued job, which Slurm
  starts only after the first is gone). A stale lock is taken over under a short-lived
  ``lock.break`` file, so two runs that find it stale at once cannot both take it.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

from recon.errors import FlytomoError

META = ".flytomo"
HEARTBEAT_S = 30.0
#: an empty or unreadable lock older than this (s) is stale (a run killed, or a full disk, while writing it)
UNREADABLE_STALE_S = 10.0
STALE_S = 300.0
#: a ``lock.break`` older than this was left by a run killed while taking over a stale lock
BREAK_STALE_S = 30.0


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Manifest:
    """Done and failed markers of one store (any process may read; see module docstring)."""

    def __init__(self, store: str | Path) -> None:
        self.store = Path(store)
        self.done_dir = self.store / META / "manifest"
        self.failed_dir = self.store / META / "failed"

    def ensure(self) -> "Manifest":
        self.done_dir.mkdir(parents=True, exist_ok=True)
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        return self

    # -- done
    def mark_done(self, name: str, info: dict[str, Any] | None = None) -> None:
        self.done_dir.mkdir(parents=True, exist_ok=True)
        _atomic_json(self.done_dir / name, {"unit": name, "finished": time.time(), **(info or {})})

    def done(self) -> set[str]:
        if not self.done_dir.is_dir():
            return set()
        return {p.name for p in self.done_dir.iterdir() if not p.name.startswith(".")}

    def is_done(self, name: str) -> bool:
        return (self.done_dir / name).is_file()

    # -- failed
    def mark_failed(self, name: str, reason: str, info: dict[str, Any] | None = None) -> None:
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        _atomic_json(self.failed_dir / name, {"unit": name, "reason": reason, "when": time.time(), **(info or {})})

    def failed(self) -> dict[str, str]:
        if not self.failed_dir.is_dir():
            return {}
        out = {}
        for p in self.failed_dir.iterdir():
            if p.name.startswith("."):
                continue
            try:
                out[p.name] = json.loads(p.read_text()).get("reason", "?")
            except (OSError, ValueError):
                out[p.name] = "?"
        return out

    def clear_failed(self, names: set[str] | None = None) -> None:
        for name in (self.failed() if names is None else names):
            (self.failed_dir / name).unlink(missing_ok=True)

    def forget(self, names: set[str]) -> None:
        """Units ``names`` become to do again (neither done nor failed)."""
        for name in names:
            (self.done_dir / name).unlink(missing_ok=True)
            (self.failed_dir / name).unlink(missing_ok=True)

    def reset(self) -> None:
        for d in (self.done_dir, self.failed_dir):
            shutil.rmtree(d, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_start_s(pid: int) -> float | None:
    """When process ``pid`` started (Unix seconds), from Linux's /proc; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time in clock ticks after boot
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _slurm_job() -> dict[str, Any]:
    """This process's Slurm job id and restart count (a requeued job keeps its id), or {}."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return {}
    try:
        restart = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        restart = 0
    return {"slurm_job_id": job, "slurm_restart_count": restart,
            **({"slurm_cluster": os.environ["SLURM_CLUSTER_NAME"]} if os.environ.get("SLURM_CLUSTER_NAME") else {})}


#: Slurm job states in which a job's processes may still write
SLURM_LIVE_STATES = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "CONFIGURING", "STOPPED", "SIGNALING",
                               "STAGE_OUT", "RESIZING"})


def _slurm_job_ended(job: str, cluster: str | None = None) -> bool | None:
    """Whether Slurm lists job ``job`` as ended (or requeued: not running); None where it cannot
    tell: no ``squeue`` here, no answer in 10 s, a job it does not know (long gone, or of another
    cluster: the lock's age decides then), or a lock of another cluster (``cluster``, where both
    it and this job's ``SLURM_CLUSTER_NAME`` are known)."""
    import shutil
    import subprocess

    here = os.environ.get("SLURM_CLUSTER_NAME")
    if shutil.which("squeue") is None or (cluster and here and cluster != here):
        return None
    try:
        p = subprocess.run(["squeue", "-h", "--states=all", "-j", str(job), "-o", "%T"], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    states = set(p.stdout.split())
    if p.returncode != 0 or not states:
        return None
    return not (states & SLURM_LIVE_STATES)


class RunLock:
    """``STORE/.flytomo/lock``: one run at a time per store (or ``path``, a lock file of
    another output: ``flytomo recon``'s, an analysis folder's). ``what`` names the holder in a
    refusal ("another flytomo run is writing it"). Use as a context manager."""

    def __init__(self, store: str | Path, command: str = "", path: str | Path | None = None,
                 what: str = "flytomo run") -> None:
        self.store = Path(store)
        self.path = Path(path) if path is not None else self.store / META / "lock"
        self.command = command
        self.what = what
        self.held = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def _record(self) -> dict:
        """What this process writes into the lock it takes (and compares a holder's with)."""
        return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": self.command, **_slurm_job()}

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = self._record()
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self.holder()
                if other is None:
                    continue  # released meanwhile
                if self._stale(other, me):
                    self._break(other, me)  # its run is gone
                    continue
                raise FlytomoError(self.store, self._refusal(other)) from None
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
            except BaseException:  # a full disk: no empty lock left behind to refuse every run after it
                self.path.unlink(missing_ok=True)
                raise
            self.held = True
            self._stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name="flytomo-lock", daemon=True)
            self._beat.start()
            return self
        raise FlytomoError(self.path, "cannot take the run lock")

    def _refusal(self, other: dict) -> str:
        """Why a run cannot take the lock ``other`` (its holder's record) holds."""
        if not other:
            return (f"another {self.what} is taking it now ({self.path} is empty or unreadable; one left so by "
                    f"one that stopped is taken over {UNREADABLE_STALE_S:g} s after it was made)")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(other.get("started", 0)))
        return (f"another {self.what} is writing it (pid {other.get('pid', '?')} on host {other.get('host', '?')}, "
                f"started {when}); wait for it to finish, or, if it is gone, delete {self.path}")

    def held_elsewhere(self) -> str | None:
        """What :meth:`acquire` would refuse now (a live run holds the lock), else None; takes
        nothing (``flytomo check`` said OK beside a running run, which then refused)."""
        other = self.holder()
        if other is None or self._stale(other, self._record()):
            return None
        return self._refusal(other)

    def _break(self, stale: dict, me: dict) -> None:
        """Remove the lock if it still holds ``stale`` (read before) and is still stale, under
        ``lock.break`` (O_EXCL): of two runs that found it stale at once, the second sees the
        first one's new lock, not the stale one, and leaves it."""
        mutex = self.path.with_name(f"{self.path.name}.break")
        try:
            fd = os.open(mutex, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - mutex.stat().st_mtime > BREAK_STALE_S:
                    mutex.unlink(missing_ok=True)  # left by a run killed while breaking
            except FileNotFoundError:
                pass
            time.sleep(0.05)
            return
        try:
            os.close(fd)
            now = self.holder()
            if now == stale and self._stale(now, me):
                self.path.unlink(missing_ok=True)
        finally:
            mutex.unlink(missing_ok=True)

    def _stale(self, other: dict, me: dict) -> bool:
        pid, host = other.get("pid"), me["host"]
        if not other:  # empty or unreadable: a run writes its lock at once, so one this old was left half-made
            try:
                return time.time() - self.path.stat().st_mtime > UNREADABLE_STALE_S
            except FileNotFoundError:
                return True
        job, restart = other.get("slurm_job_id"), other.get("slurm_restart_count")
        if (job is not None and job == me.get("slurm_job_id") and isinstance(restart, int)
                and restart < me.get("slurm_restart_count", 0)):
            return True  # an earlier start of this requeued job: Slurm ended it before this one
        if (job is not None and job != me.get("slurm_job_id")
                and (ended := _slurm_job_ended(job, other.get("slurm_cluster"))) is not None):
            return ended  # Slurm knows: a job killed on another node (a blind probe waited out STALE_S)
        if other.get("host") == host:
            if not isinstance(pid, int) or not _pid_alive(pid):
                return isinstance(pid, int)
            began, started = _process_start_s(pid), other.get("started")
            # a live pid that began after the lock was taken is another process (the pid reused)
            return began is not None and isinstance(started, (int, float)) and began > started + 2.0
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > STALE_S

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        self._stop.set()
        if self.held:
            other = self.holder()
            if other is not None and other.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
