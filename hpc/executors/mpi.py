"""MPI executor: ``mpiexec -n N flytomo run CONFIG --executor mpi`` (or ``srun``).

Rank 0 is the coordinator: it plans, holds the lock, writes the store's attributes and
hands units out one at a time on request (a work queue); ranks 1..N−1 are workers that ask
for a unit, run it, send the result back with the next request. Rank 0 also runs units
itself, one at a time in a thread that makes no MPI calls, so N ranks are N workers: with
one rank per GPU (``flytomo submit``'s default) every GPU of the allocation reconstructs.
A slow rank just takes fewer units. MPI calls poll with a short sleep instead of blocking,
so an idle rank does not spin a core (MPICH's blocking receive busy-waits). Rank r uses GPU
(local rank mod GPUs) when the device is ``cuda``. With a single rank everything runs in
rank 0, sequentially.
"""
from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections import deque
from typing import Any

from .base import ExecutorBase, set_torch_threads

TAG_TO_COORD, TAG_TO_WORKER = 11, 12
POLL_S = 0.002
#: seconds rank 0 waits, on closing, for the unit its own thread runs (within Slurm's KillWait)
SHARE_JOIN_S = 25.0


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


def _poll(comm: Any) -> tuple[Any, int] | None:
    """One message from any rank if one is waiting, as (message, source rank); else None."""
    from mpi4py import MPI

    status = MPI.Status()
    if not comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status):
        return None
    return comm.recv(source=status.Get_source(), tag=status.Get_tag()), status.Get_source()


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
        out = _run_item(fn, item)
        n += 1
        comm.send(("result", (idx, out)), dest=0, tag=TAG_TO_COORD)


def _run_item(fn, item) -> tuple:
    """``("ok", fn(item))``, or ``("error", message, traceback)``: the coordinator decides."""
    try:
        return ("ok", fn(item))
    except BaseException as exc:
        return ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=5))


class _CoordinatorShare:
    """Rank 0's own share of the work: one item at a time in a daemon thread, which makes
    no MPI call (the main thread keeps all of them, as MPI_THREAD_FUNNELED asks)."""

    def __init__(self, fn) -> None:
        self.busy = False
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, args=(fn,), daemon=True,
                                        name="flytomo-rank0-worker")
        self._thread.start()

    def _loop(self, fn) -> None:
        while (job := self._inbox.get()) is not None:
            idx, item = job
            self._outbox.put((idx, _run_item(fn, item)))

    def give(self, idx: int, item: Any) -> None:
        self.busy = True
        self._inbox.put((idx, item))

    def result(self) -> tuple[int, tuple] | None:
        """The finished item's (index, outcome), or None while it runs."""
        try:
            out = self._outbox.get_nowait()
        except queue.Empty:
            return None
        self.busy = False
        return out

    def stop(self, wait_s: float = 0.0) -> None:
        """Let the thread end after its item; wait up to ``wait_s`` for that. A rank that exits
        while the thread is inside torch aborts ("terminate called without an active
        exception", exit 6: a blind probe's SIGTERM, as scancel sends it)."""
        self._inbox.put(None)
        self._thread.join(timeout=wait_s)


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
        self._share: _CoordinatorShare | None = None
        if self.size > 1:
            os.environ.setdefault("FLYTOMO_LOCAL_RANK", str(_local_rank(self.comm)))
        set_torch_threads(threads)

    @property
    def n_workers(self) -> int:  # type: ignore[override]
        return self.size  # rank 0 works too

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
        share = self._share = _CoordinatorShare(fn)

        def hand_out(r: int) -> None:
            if not pending:
                if r != 0:
                    self.idle.append(r)
                return
            idx, item = pending.popleft()
            outstanding[idx] = r
            if r == 0:
                share.give(idx, item)
            else:
                self.comm.send(("work", (idx, fn, item)), dest=r, tag=TAG_TO_WORKER)

        def outcome(idx: int, out: tuple, src: int):
            if out[0] == "ok":
                return out[1]
            exc = WorkerFailed(f"rank {src}: {out[1]}")
            if on_error is None:
                raise exc
            return on_error(by_idx[idx], exc)

        try:
            hand_out(0)
            while self.idle and pending:
                hand_out(self.idle.popleft())
            while pending or outstanding:
                got = share.result() if share.busy else None
                if got is not None:
                    idx, out = got
                    outstanding.pop(idx, None)
                    hand_out(0)
                    yield outcome(idx, out, 0)
                    continue
                polled = _poll(self.comm)
                if polled is None:
                    time.sleep(POLL_S)
                    continue
                (kind, payload), src = polled
                if kind == "ready":
                    hand_out(src)
                    continue
                idx, out = payload
                outstanding.pop(idx, None)
                hand_out(src)
                yield outcome(idx, out, src)
        finally:
            share.stop()

    def describe(self) -> str:
        if self.size == 1:
            return "mpi (1 rank)"
        return f"mpi ({self.size} ranks, all reconstructing; rank 0 also coordinates)"

    def close(self) -> None:
        if self._share is not None:  # rank 0's own unit ends before the rank does
            self._share.stop(wait_s=SHARE_JOIN_S)
            self._share = None
        if self._closed or self.size == 1:
            self._closed = True
            return
        self._closed = True
        # every worker sent "ready" once or is idle after its last result: tell all to stop
        for r in range(1, self.size):
            self.comm.send(("stop", None), dest=r, tag=TAG_TO_WORKER)
