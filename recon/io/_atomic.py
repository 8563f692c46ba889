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


def is_zarr_folder(path: Path) -> bool:
    """A folder with zarr metadata at its top (``.zgroup``/``.zarray``, or v3 ``zarr.json``)."""
    return path.is_dir() and any((path / name).is_file() for name in (".zgroup", ".zarray", "zarr.json"))


def make_parent(path: Path) -> None:
    """Make the folder ``path`` is written into (and its parents), as ``mkdir -p`` does;
    FlytomoError naming ``path`` where it cannot be made (read-only, a file in the way)."""
    parent = Path(path).parent
    blocker = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise FlytomoError(path, f"cannot write: {blocker} is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FlytomoError(path, f"cannot make its folder {parent} ({err.strerror or err})") from None


def first_unwritable(path: Path) -> Path | None:
    """The first folder of the tree at ``path`` (itself included) this process cannot write in
    (read-only, or another user's); None where it can write in every one, or ``path`` is no folder."""
    for root, _, _ in os.walk(path):
        if not os.access(root, os.W_OK | os.X_OK):
            return Path(root)
    return None


def _try_writing_in(path: Path) -> None:
    """FlytomoError naming ``path`` where its folder takes no new file, which ``os.access`` does
    not tell for root or on a read-only or special mount (a blind probe's ``--out
    /proc/v.zarr`` was refused naming an internal lock file): a hidden empty file is made
    and removed."""
    probe = path.parent / f".{path.name}.write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:  # left by a killed check: writing there works
        probe.unlink(missing_ok=True)
        return
    except OSError as err:
        raise FlytomoError(path, f"cannot write in {path.parent} ({err.strerror or err})") from None
    os.close(fd)
    probe.unlink(missing_ok=True)


def check_target(path: Path, overwrite: bool, *, folder: bool | None = None,
                 inputs: tuple | list = ()) -> None:
    """FlytomoError unless ``path`` may be written: its folder exists; it is none of ``inputs``
    and holds none of them; and where it exists, ``overwrite`` is given and it is what the
    output replaces — a zarr store for a folder output (``folder=True``), a file for a file
    output (``folder=False``). A folder that is not a zarr store is never replaced, even with
    ``overwrite``: a typo in ``--out`` must not delete a folder of scans."""
    path = Path(path)
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise FlytomoError(path, f"cannot write: {path.parent} {what}")
    if not os.access(path.parent, os.W_OK):
        raise FlytomoError(path, f"cannot write in {path.parent} (read-only, or no permission)")
    _try_writing_in(path)
    target = path.resolve()
    for src in inputs:
        s = Path(src).resolve()
        if s == target or target in s.parents:
            raise FlytomoError(path, f"{'is' if s == target else 'holds'} the input {src}: choose another output")
    if not (path.exists() or path.is_symlink()):
        return
    if not overwrite:
        raise FlytomoError(path, "already exists (--overwrite, or overwrite=True in Python, replaces it)")
    if path.is_dir() and not path.is_symlink():
        if not is_zarr_folder(path):
            raise FlytomoError(path, "is a folder and not a zarr store: not replaced, even with --overwrite "
                                     "(remove or rename it yourself if that is what you mean)")
        if folder is False:
            raise FlytomoError(path, "is a zarr store (a folder) and the output is a file: not replaced")
    elif folder is True:
        raise FlytomoError(path, "is a file and the output is a zarr store (a folder): not replaced, even "
                                 "with --overwrite")


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` to ``path``, replacing an old ``path`` when allowed."""
    if path.exists() or path.is_symlink():
        if not overwrite:  # tmp is kept: the caller decides (atomic_path removes it)
            raise FlytomoError(path, "already exists (--overwrite, or overwrite=True in Python, replaces it)")
        if path.is_dir() and not path.is_symlink():
            old = temporary_name(path, f"old-{os.getpid()}")
            os.replace(path, old)  # folders cannot be replaced in one step: move aside first
            os.replace(tmp, path)
            remove(old)
            return
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False, folder: bool | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` on success, delete it on error.
    ``path`` is checked first (:func:`check_target`; ``folder``: what the output is)."""
    path = Path(path)
    check_target(path, overwrite, folder=folder)
    tmp = temporary_name(path)
    remove(tmp)
    try:
        yield tmp
        publish(tmp, path, overwrite)
    except BaseException:
        remove(tmp)
        raise
