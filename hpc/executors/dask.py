"""Dask executor: a ``distributed.Client`` on a LocalCluster (default), a running scheduler
(address or scheduler file, e.g. from ``dask-mpi``), or ``dask_jobqueue.SLURMCluster``.

One worker process per GPU / per core-group, one thread per worker (``threads_per_worker``
torch threads inside it). Units are submitted all at once; the scheduler hands them to
free workers, and re-runs a unit whose worker died (``distributed.scheduler.allowed-failures``).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from recon.errors import FlytomoError

from .base import ExecutorBase


def build_cluster(dask_config: Any, threads_per_worker: int = 1) -> Any:
    """The cluster object the config asks for, or ``None`` when it names an existing scheduler.

    - ``jobqueue`` set: ``dask_jobqueue.SLURMCluster(**settings)`` scaled to ``jobqueue.jobs`` jobs;
    - ``scheduler_address`` / ``scheduler_file`` set: ``None`` (connect with :func:`connect`);
    - otherwise ``distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)``.
    """
    if dask_config.scheduler_address or dask_config.scheduler_file:
        return None
    if dask_config.jobqueue is not None:
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise FlytomoError("executor.dask.jobqueue", "dask_jobqueue is not installed") from None
        settings = dask_config.jobqueue.model_dump(exclude={"jobs"}, exclude_none=True)
        cluster = SLURMCluster(**settings)
        cluster.scale(jobs=dask_config.jobqueue.jobs)
        return cluster
    import dask
    from distributed import LocalCluster

    # no MALLOC_TRIM_THRESHOLD_ for the workers (see hpc.executors.base.tune_malloc)
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), _workers_ignore_ctrl_c():
        return LocalCluster(n_workers=int(dask_config.workers), threads_per_worker=1, processes=True,
                            dashboard_address=None, silence_logs=logging.WARNING)


@contextlib.contextmanager
def _workers_ignore_ctrl_c():
    """Worker processes started inside inherit SIGINT ignored (Python keeps an ignored SIGINT
    from its parent), so Ctrl-C, which a terminal sends to every process of the job, stops
    the run through this process alone: its one line, not each worker's KeyboardInterrupt
    traceback (blind probe R: 69 lines); the run closes the cluster. A no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_address(address: str, key: str) -> None:
    """One line, at once, for an address that is no Dask address or where nothing listens
    (was: a traceback after 120 s, exit 1). Schemes other than tcp/tls are left to Dask."""
    from distributed.comm import parse_address, parse_host_port

    known = ("tcp", "tls", "inproc", "ucx", "ws", "wss")
    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location) if scheme in ("tcp", "tls") else (None, None)
    except (ValueError, TypeError):
        scheme = None
    if scheme not in known or (scheme in ("tcp", "tls") and not (host and port)):
        raise FlytomoError(key, f"{address!r} is not a Dask scheduler address (tcp://HOST:PORT)")
    if scheme in ("tcp", "tls"):
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_CHECK_S).close()
        except OSError as err:
            raise FlytomoError(key, f"cannot reach {address} ({err.strerror or type(err).__name__}): is a "
                                    "Dask scheduler running there?") from None
    if scheme == "tcp":  # something listens: is it a Dask scheduler? (an HTTP port hung the client)
        try:
            kind = asyncio.run(asyncio.wait_for(_identity(address), CONNECT_CHECK_S * 2)).get("type")
        except BaseException as err:  # noqa: BLE001 - timeouts, protocol errors, absurd allocations
            if isinstance(err, KeyboardInterrupt):
                raise
            kind = f"no answer in Dask's protocol ({type(err).__name__})"
        if kind != "Scheduler":
            raise FlytomoError(key, f"{address} is not a Dask scheduler ({kind}): the scheduler's port, not "
                                    "its dashboard's?")


async def _identity(address: str) -> dict:
    from distributed.core import rpc

    async with rpc(address, timeout=CONNECT_CHECK_S) as remote:
        return await remote.identity()


def _wait_for_file(path: str, timeout_s: float) -> None:
    """A scheduler file is written by the scheduler once it runs (dask-mpi, `dask scheduler
    --scheduler-file`): wait for it, then one line (was: a silent wait with no end)."""
    deadline = time.monotonic() + timeout_s
    while not os.path.isfile(path):
        if time.monotonic() > deadline:
            raise FlytomoError("executor.dask.scheduler_file", f"{path}: no scheduler file appeared within "
                                                               f"{timeout_s:.0f} s; is the scheduler started with it?")
        time.sleep(0.5)


#: seconds to open a TCP connection to a scheduler before its address counts as unreachable
CONNECT_CHECK_S = 10.0


class _CtrlCBeforeTheFuture(logging.Filter):
    """Drops one log record: Ctrl-C that comes before ``distributed.utils.sync`` has made its
    future makes the ``cancel`` callback it schedules raise NameError (``future`` unset), which
    tornado logs as a traceback above the run's one line (a race in distributed, seen once in
    the Ctrl-C test); the run stops as it should."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, NameError) and "sync.<locals>.cancel" in record.getMessage())


_CTRL_C_FILTER = _CtrlCBeforeTheFuture()


def connect(dask_config: Any, cluster: Any = None, timeout_s: float = 120.0) -> Any:
    """A ``distributed.Client`` for the config (on ``cluster`` when given), with ≥1 worker.
    A bad or unreachable scheduler is one :class:`FlytomoError` line."""
    from distributed import Client

    logging.getLogger("tornado.application").addFilter(_CTRL_C_FILTER)  # once: the same filter object

    if cluster is not None:
        client = Client(cluster)
    else:
        if dask_config.scheduler_file:
            key, file = "executor.dask.scheduler_file", str(dask_config.scheduler_file)
            _wait_for_file(file, timeout_s)
            try:
                address = json.loads(Path(file).read_text())["address"]
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise FlytomoError(file, f"not a Dask scheduler file ({type(err).__name__})") from None
        elif dask_config.scheduler_address:
            key, address = "executor.dask.scheduler_address", str(dask_config.scheduler_address)
        else:  # pragma: no cover - build_cluster always gives one then
            raise FlytomoError("executor.dask", "no cluster and no scheduler to connect to")
        _check_address(address, key)
        try:
            client = Client(address, timeout=timeout_s)
        except Exception as err:  # noqa: BLE001 - Dask raises OSError, TimeoutError, even MemoryError here
            raise FlytomoError(key, f"no Dask scheduler answered at {address} ({type(err).__name__}: "
                                    f"{str(err).splitlines()[0][:160] if str(err) else ''})") from None
    if dask_config.jobqueue is not None:
        return client  # Slurm jobs may queue for long: units wait in the scheduler meanwhile
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except Exception:
        client.close()
        raise FlytomoError("executor.dask", f"no Dask worker joined within {timeout_s:.0f} s") from None
    try:
        check_workers(client)
    except FlytomoError:
        client.close()
        raise
    return client


#: the modules a unit runs in: a worker that cannot import them dies at its first unit
WORKER_IMPORTS = "import hpc.engine, recon.methods, analysis.run"


def check_workers(client: Any) -> None:
    """Every worker connected now imports flytomo, at the driver's version. A worker that cannot
    import it loses its connection at its first unit and the run waits for a worker for good: one
    :class:`FlytomoError` line instead. Another version is a warning (its units may differ)."""
    from importlib.metadata import version

    from distributed.comm.core import CommClosedError

    answers = client.run(exec, WORKER_IMPORTS, {}, on_error="return")
    lost = {w: a for w, a in answers.items() if isinstance(a, (CommClosedError, TimeoutError))}
    bad = {w: a for w, a in answers.items() if isinstance(a, BaseException) and w not in lost}
    if lost:  # died as it was asked (a blind probe killed one at start-up: the run was refused as an import error)
        worker, err = sorted(lost.items())[0]
        warnings.warn(f"{len(lost)} of {len(answers)} Dask workers were lost while the driver checked them ({worker}: "
                      f"{type(err).__name__}); the run goes on with the workers it has (a LocalCluster or "
                      f"SLURMCluster starts new ones)", stacklevel=2)
    if bad:
        worker, err = sorted(bad.items())[0]
        raise FlytomoError("executor.dask", f"{len(bad)} of {len(answers)} Dask workers cannot import "
                                            f"flytomo ({worker}: {type(err).__name__}: {err}); install "
                                            f"flytomo in the workers' environment")
    ours = version("flytomo")
    theirs = client.run(version, "flytomo", on_error="return")
    other = sorted({v for v in theirs.values() if isinstance(v, str) and v != ours})
    if other:
        warnings.warn(f"Dask workers run flytomo {', '.join(other)}, this driver {ours}: their "
                      f"volumes may differ from this version's", stacklevel=2)


class WorkersDied(RuntimeError):
    """A unit whose Dask workers all died while running it (Dask's ``KilledWorker``), in words a
    user can act on."""

    def __init__(self, tries: int, last: str) -> None:
        super().__init__(f"the Dask workers that ran it died {tries} times (the last: {last}), most often killed "
                         "for memory (give each worker more, or make rows_per_chunk smaller), else a crash (the "
                         "workers' logs say which); the next run tries it again")


def _as_workers_died(exc: Exception) -> Exception:
    from distributed import KilledWorker

    if not isinstance(exc, KilledWorker):
        return exc
    last = getattr(exc.last_worker, "address", exc.last_worker)
    return WorkersDied(int(exc.allowed_failures) + 1, str(last))


#: the run's log (hpc.engine's): workers lost during a run are named there
_log = logging.getLogger("flytomo.run")


class DaskExecutor(ExecutorBase):
    kind = "dask"

    def __init__(self, executor_config: Any, client: Any = None) -> None:
        self.config = executor_config
        self.cluster = None
        self._own_client = client is None
        if client is None:
            self.cluster = build_cluster(executor_config.dask, executor_config.worker_threads())
            client = connect(executor_config.dask, self.cluster)
        self.client = client

    @property
    def n_workers(self) -> int:  # type: ignore[override]
        try:
            return len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # pragma: no cover
            return 0

    def _workers(self) -> set[str] | None:
        """The workers' addresses now (None: the scheduler did not answer)."""
        try:
            return set(self.client.scheduler_info().get("workers", {}))
        except Exception:  # noqa: BLE001 - the scheduler is gone: the futures will say so
            return None

    def imap_unordered(self, fn, items, on_error=None):
        """As :class:`hpc.executors.base.Executor`; a worker that leaves while the items run is
        named in the run's log (its items are run again elsewhere), and an item whose workers all
        died is passed to ``on_error`` as :class:`WorkersDied`."""
        from distributed import as_completed

        items = list(items)
        if not items:
            return
        futures = self.client.map(fn, items, pure=False)
        which = {f.key: item for f, item in zip(futures, items)}
        workers = self._workers()
        try:
            for fut in as_completed(futures):
                item = which[fut.key]
                try:
                    r = fut.result()
                except Exception as exc:  # the task raised, or its worker died too often
                    if on_error is None:
                        raise
                    r = on_error(item, _as_workers_died(exc))
                fut.release()
                now = self._workers()
                if now is not None:
                    for gone in sorted(workers - now if workers is not None else ()):
                        _log.warning("Dask worker %s left the run (%d workers now): the units it held are run again "
                                     "elsewhere (killed for memory? its log says)", gone, len(now))
                    workers = now
                yield r
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()

    def map(self, fn, items):
        items = list(items)
        return self.client.gather(self.client.map(fn, items, pure=False)) if items else []

    def describe(self) -> str:
        where = (self.config.dask.scheduler_address or self.config.dask.scheduler_file
                 or ("SLURMCluster" if self.config.dask.jobqueue is not None else "LocalCluster"))
        return f"dask ({where}, {self.n_workers} workers)"

    def close(self) -> None:
        if self._own_client and self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
