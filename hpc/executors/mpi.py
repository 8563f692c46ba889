"""MPI executor: ``mpiexec -n N flytomo run CONFIG --executor mpi`` (or ``srun``).

Rank 0 is the coordinator: it plans, holds the lock, writes the store's attributes and
hands units out one at a time on request (a work queue); ranks 1..N−1 are workers that ask
for a unit, run it, send the result back with the next request. A slow rank just takes
fewer units. Both sides poll with a short sleep instead of blocking in MPI, so an idle rank
does not spin a core (MPICH's blocking receive busy-waits). Worker rank r uses GPU
(local rank mod GPUs) when the device is ``cuda``. With a single rank everything runs in
rank 0, sequentially.
"""
from __future__ import annotations

import os
import time
import traceback
from collections import deque
from typing import Any

from .base import ExecutorBase, set_torch_threads

TAG_TO_COORD, TAG_TO_WORKER = 11, 12
POLL_S = 0.002


def _comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _local_rank(comm: Any) -> int:
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    r = local.Get_rank()
    local.Free()
    return r


def _recv(comm: Any, source: int | None) -> tuple[Any, int]:
    """Receive one message by polling (no busy-wait); returns (message, source rank).
    ``source`` None = any rank."""
    from mpi4py import MPI

    source = MPI.ANY_SOURCE if source is None else source
    status = MPI.Status()
    while not comm.Iprobe(source=source, tag=MPI.ANY_TAG, status=status):
        time.sleep(POLL_S)
    msg = comm.recv(source=status.Get_source(), tag=status.Get_tag())
    return msg, status.Get_source()


def rank() -> int:
    """This process's rank in COMM_WORLD (0 when mpi4py is missing)."""
    try:
        return _comm().Get_rank()
    except ImportError:  # pragma: no cover
        return 0


class WorkerFailed(RuntimeError):
    """An item raised on a worker rank; the message carries the remote traceback's last line."""


def worker_loop(threads: int | None = None) -> int:
    """Run on ranks ≥ 1 until rank 0 says stop. Returns the number of items run."""
    comm = _comm()
    os.environ["FLYTOMO_LOCAL_RANK"] = str(_local_rank(comm))
    set_torch_threads(threads)
    n = 0
    comm.send(("ready", None), dest=0, tag=TAG_TO_COORD)
    while True:
        msg, _ = _recv(comm, 0)
        kind, payload = msg
        if kind == "stop":
            return n
        idx, fn, item = payload
        try:
            out = ("ok", fn(item))
        except BaseException as exc:  # report it; the coordinator decides
            out = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=5))
        n += 1
        comm.send(("result", (idx, out)), dest=0, tag=TAG_TO_COORD)


class MpiExecutor(ExecutorBase):
    """The coordinator side (rank 0). Workers must be in :func:`worker_loop`."""

    kind = "mpi"

    def __init__(self, threads: int | None = None) -> None:
        self.comm = _comm()
        self.size = self.comm.Get_size()
        if self.comm.Get_rank() != 0:
            raise RuntimeError("MpiExecutor runs on rank 0; other ranks call worker_loop()")
        self.threads = threads
        self.idle: deque[int] = deque()
        self._closed = False
        if self.size > 1:
            os.environ.setdefault("FLYTOMO_LOCAL_RANK", str(_local_rank(self.comm)))
        else:
            set_torch_threads(threads)

    @property
    def n_workers(self) -> int:  # type: ignore[override]
        return max(1, self.size - 1)

    def imap_unordered(self, fn, items, on_error=None):
        pending = deque(enumerate(items))
        if self.size == 1:  # no workers: run here
            for _, item in pending:
                try:
                    yield fn(item)
                except Exception as exc:
                    if on_error is None:
                        raise
                    yield on_error(item, exc)
            return
        by_idx = dict(pending)
        outstanding: dict[int, int] = {}  # index → rank

        def hand_out(r: int) -> None:
            if pending:
                idx, item = pending.popleft()
                outstanding[idx] = r
                self.comm.send(("work", (idx, fn, item)), dest=r, tag=TAG_TO_WORKER)
            else:
                self.idle.append(r)

        while self.idle and pending:
            hand_out(self.idle.popleft())
        while pending or outstanding:
            msg, src = _recv(self.comm, None)
            kind, payload = msg
            if kind == "ready":
                hand_out(src)
                continue
            idx, out = payload
            outstanding.pop(idx, None)
            hand_out(src)
            if out[0] == "ok":
                yield out[1]
            else:
                exc = WorkerFailed(f"rank {src}: {out[1]}")
                if on_error is None:
                    raise exc
                yield on_error(by_idx[idx], exc)

    def describe(self) -> str:
        return f"mpi ({self.size} ranks: 1 coordinator, {self.n_workers} worker{'s' if self.n_workers != 1 else ''})"

    def close(self) -> None:
        if self._closed or self.size == 1:
            self._closed = True
            return
        self._closed = True
        # every worker sent "ready" once or is idle after its last result: tell all to stop
        for r in range(1, self.size):
            self.comm.send(("stop", None), dest=r, tag=TAG_TO_WORKER)
