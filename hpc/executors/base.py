"""The :class:`Executor` Protocol every engine implements, and helpers shared by workers."""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator, Protocol, runtime_checkable

OnError = Callable[[Any, BaseException], Any]


@runtime_checkable
class Executor(Protocol):
    """Runs picklable, module-level functions on items somewhere; the engine's only view of an engine.

    - ``imap_unordered(fn, items, on_error)``: yields ``fn(item)`` for every item as each
      finishes (any order). When running an item raises or its worker dies, yields
      ``on_error(item, exc)`` instead (or re-raises when ``on_error`` is None); other items
      go on. Items are handed out dynamically, so a slow worker does not stall the rest.
    - ``map(fn, items)``: ``[fn(item) ...]`` in order (for the analysis stage).
    - ``n_workers``: processes that run items; ``describe()``: one line for logs.
    - ``close()``: release workers / clusters (also on ``with`` exit).
    """

    kind: str
    n_workers: int

    def imap_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any],
                       on_error: OnError | None = None) -> Iterator[Any]: ...

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...

    def __enter__(self) -> "Executor": ...

    def __exit__(self, *exc: object) -> None: ...


class ExecutorBase:
    """Context-manager plumbing and an ordered ``map`` built on ``imap_unordered``."""

    kind = "base"
    n_workers = 1

    def imap_unordered(self, fn, items, on_error=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def map(self, fn, items):
        indexed = list(enumerate(items))
        out: dict[int, Any] = {}

        for i, r in self.imap_unordered(_Indexed(fn), indexed):
            out[i] = r
        return [out[i] for i in range(len(indexed))]

    def describe(self) -> str:
        return f"{self.kind} ({self.n_workers} worker{'s' if self.n_workers != 1 else ''})"

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Indexed:
    """Picklable wrapper: (i, item) → (i, fn(item))."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, pair: tuple[int, Any]) -> tuple[int, Any]:
        i, item = pair
        return i, self.fn(item)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity: a Slurm allocation's, not the node's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def warn_if_oversubscribed(processes: int, threads: int, what: str) -> None:
    """A warning where ``processes`` × ``threads`` torch threads exceed this machine's cores
    (the ones this process may run on): a blind probe's `--threads 2` on 2 cores ran 4-7×
    slower, bit-identical and without a word."""
    import warnings

    cores = usable_cores()
    if processes * threads > cores:
        warnings.warn(f"{what}: {processes} × {threads} torch threads on {cores} cores: oversubscribed, "
                      "much slower than threads_per_worker (--threads) × workers ≤ cores", UserWarning,
                      stacklevel=3)


def set_torch_threads(n: int | None) -> None:
    """Limit torch (and BLAS) threads in this process; no-op when ``n`` is None or unchanged."""
    if not n:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


_malloc_tuned = False


def tune_malloc() -> None:
    """Undo a small fixed ``MALLOC_TRIM_THRESHOLD_`` (Dask's nanny sets 65536 for its workers).

    With it glibc hands every large free back to the OS and maps it again on the next
    allocation; the MLEM loops allocate the same large tensors every iteration and ran about
    twice as slow in Dask workers (measured: 0.30 s → 0.16 s per 16-row unit). Raises the
    mmap and trim thresholds (256 / 512 MiB) once per process, on glibc only.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def worker_device(device: str) -> str:
    """``cuda`` → ``cuda:(local index mod GPUs)``; the local index comes from
    ``FLYTOMO_LOCAL_RANK`` (MPI) or the Dask worker's name; ``cpu`` stays ``cpu``."""
    if device != "cuda":
        return device
    try:
        import torch
        n = torch.cuda.device_count()
    except ImportError:  # pragma: no cover
        return device
    if n <= 1:
        return "cuda:0" if n == 1 else device
    idx = os.environ.get("FLYTOMO_LOCAL_RANK")
    if idx is None:
        try:
            from distributed import get_worker
            name = get_worker().name
            idx = str(name if isinstance(name, int) else abs(hash(name)))
        except (ImportError, ValueError):
            idx = "0"
    return f"cuda:{int(idx) % n}"
