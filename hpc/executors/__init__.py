"""Executors: how the work units of an experiment are spread (local, Dask, MPI).

The engine knows an executor only through the :class:`~hpc.executors.base.Executor`
Protocol; :func:`make_executor` picks the implementation from the config's
``executor.kind`` (or ``--executor``). Adding an engine touches one file here and the
``_FACTORIES`` table.
"""
from __future__ import annotations

from typing import Any

from recon.errors import FlytomoError

from .base import Executor, set_torch_threads, warn_if_oversubscribed

__all__ = ["Executor", "make_executor", "set_torch_threads", "KINDS"]

KINDS = ("local", "dask", "mpi")


def make_executor(executor_config: Any, **kwargs: Any) -> Executor:
    """The executor for ``executor_config`` (an :class:`hpc.config.ExecutorConfig`)."""
    kind = executor_config.kind
    threads = executor_config.worker_threads()
    if kind == "local":
        from .local import LocalExecutor

        warn_if_oversubscribed(1, threads, "local executor")
        return LocalExecutor(threads=threads)
    if kind == "dask":
        from .dask import DaskExecutor

        d = executor_config.dask
        if not (d.scheduler_address or d.scheduler_file or d.jobqueue is not None):  # a LocalCluster here
            warn_if_oversubscribed(int(d.workers), threads, "Dask LocalCluster")

        return DaskExecutor(executor_config, **kwargs)
    if kind == "mpi":
        from .mpi import MpiExecutor

        return MpiExecutor(threads=threads, **kwargs)
    raise FlytomoError("executor.kind", f"unknown executor '{kind}'; choose one of {', '.join(KINDS)}")
