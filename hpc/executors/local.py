"""In-process, sequential executor: the default, and the reference the others are tested against."""
from __future__ import annotations

from .base import ExecutorBase, set_torch_threads


class LocalExecutor(ExecutorBase):
    kind = "local"
    n_workers = 1

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        set_torch_threads(threads)

    def imap_unordered(self, fn, items, on_error=None):
        for item in items:
            try:
                r = fn(item)
            except Exception as exc:
                if on_error is None:
                    raise
                r = on_error(item, exc)
            yield r

    def describe(self) -> str:
        return f"local (in-process, {self.threads or 'default'} torch thread(s))"
