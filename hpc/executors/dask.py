"""Dask executor: a ``distributed.Client`` on a LocalCluster (default), a running scheduler
(address or scheduler file, e.g. from ``dask-mpi``), or ``dask_jobqueue.SLURMCluster``.

One worker process per GPU / per core-group, one thread per worker (``threads_per_worker``
torch threads inside it). Units are submitted all at once; the scheduler hands them to
free workers, and re-runs a unit whose worker died (``distributed.scheduler.allowed-failures``).
"""
from __future__ import annotations

import logging
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
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=int(dask_config.workers), threads_per_worker=1, processes=True,
                            dashboard_address=None, silence_logs=logging.WARNING)


def connect(dask_config: Any, cluster: Any = None, timeout_s: float = 120.0) -> Any:
    """A ``distributed.Client`` for the config (on ``cluster`` when given), with ≥1 worker."""
    from distributed import Client

    if cluster is not None:
        client = Client(cluster)
    elif dask_config.scheduler_file:
        client = Client(scheduler_file=str(dask_config.scheduler_file), timeout=timeout_s)
    elif dask_config.scheduler_address:
        client = Client(dask_config.scheduler_address, timeout=timeout_s)
    else:  # pragma: no cover - build_cluster always gives one then
        raise FlytomoError("executor.dask", "no cluster and no scheduler to connect to")
    if dask_config.jobqueue is not None:
        return client  # Slurm jobs may queue for long: units wait in the scheduler meanwhile
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except Exception:
        client.close()
        raise FlytomoError("executor.dask", f"no Dask worker joined within {timeout_s:.0f} s") from None
    return client


class DaskExecutor(ExecutorBase):
    kind = "dask"

    def __init__(self, executor_config: Any, client: Any = None) -> None:
        self.config = executor_config
        self.cluster = None
        self._own_client = client is None
        if client is None:
            self.cluster = build_cluster(executor_config.dask, executor_config.threads_per_worker)
            client = connect(executor_config.dask, self.cluster)
        self.client = client

    @property
    def n_workers(self) -> int:  # type: ignore[override]
        try:
            return len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # pragma: no cover
            return 0

    def imap_unordered(self, fn, items, on_error=None):
        from distributed import as_completed

        items = list(items)
        if not items:
            return
        futures = self.client.map(fn, items, pure=False)
        which = {f.key: item for f, item in zip(futures, items)}
        try:
            for fut in as_completed(futures):
                item = which[fut.key]
                try:
                    r = fut.result()
                except Exception as exc:  # the task raised, or its worker died too often
                    if on_error is None:
                        raise
                    r = on_error(item, exc)
                fut.release()
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
