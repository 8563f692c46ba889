"""Write-then-rename: a file or folder appears under its final name only when complete.

Data are written under a hidden temporary name in the same folder (same file system, so
the rename is atomic for files and a single step for folders) and renamed at the end; on
any error the temporary is removed, so nothing left behind claims to be complete.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from recon.errors import FlytomoError


def temporary_name(path: Path, tag: str | None = None) -> Path:
    """``.{name}.partial-<tag>`` next to ``path`` (tag: this process id by default)."""
    tag = str(os.getpid()) if tag is None else tag
    return path.with_name(f".{path.name}.partial-{tag}")


def remove(path: Path) -> None:
    """Delete a file or a folder tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def check_target(path: Path, overwrite: bool) -> None:
    """FlytomoError when ``path`` exists and may not be replaced, or its folder is missing."""
    if not path.parent.is_dir():
        raise FlytomoError(path, f"cannot write: folder {path.parent} does not exist")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FlytomoError(path, "already exists (pass overwrite=True to replace it)")


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` to ``path``, replacing an old ``path`` when allowed."""
    if path.exists() or path.is_symlink():
        if not overwrite:  # tmp is kept: the caller decides (atomic_path removes it)
            raise FlytomoError(path, "already exists (pass overwrite=True to replace it)")
        if path.is_dir() and not path.is_symlink():
            old = temporary_name(path, f"old-{os.getpid()}")
            os.replace(path, old)  # folders cannot be replaced in one step: move aside first
            os.replace(tmp, path)
            remove(old)
            return
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` on success, delete it on error."""
    path = Path(path)
    check_target(path, overwrite)
    tmp = temporary_name(path)
    remove(tmp)
    try:
        yield tmp
        publish(tmp, path, overwrite)
    except BaseException:
        remove(tmp)
        raise
