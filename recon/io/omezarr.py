"""Reconstructed volumes as OME-Zarr images with provenance.

Format choice: OME-Zarr (NGFF) 0.4 on **zarr format 2** (0.4 is defined on zarr v2; 0.5
needs zarr v3, which fewer viewers read), written with the zarr-python 3 API. A store is a
group with
- array ``0``: (z, y, x) or (t, z, y, x) float32, attenuation per pixel, chunks by rows
  ((z_c, y, x) or (1, z_c, y, x)), chunk keys with "/" separators (as 0.4 requires);
- root attribute ``multiscales`` (version 0.4; axes t (time, second), z, y, x (space,
  nanometer when the pixel size is known, with that scale));
- root attribute ``flytomo``: the caller's provenance (method, options, geometry, input
  files…) plus ``version`` = ``recon.__version__``.

Nothing incomplete carries the final name: :func:`write_volume` writes under
``.{name}.partial-<pid>`` and renames; :func:`create_volume` makes ``.{name}.partial`` (one
name per store, so parallel workers and a resumed run find it: :func:`partial_path`) that
:func:`finalize` renames and :func:`discard` removes.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import zarr

import recon
from recon.errors import FlytomoError
from recon.io._atomic import atomic_path, check_target, publish, remove

ARRAY = "0"
NGFF_VERSION = "0.4"


def partial_path(path: str | os.PathLike) -> Path:
    """Where :func:`create_volume` builds the store ``path`` until :func:`finalize`."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def default_chunks(shape: tuple[int, ...], target_bytes: int = 8 << 20) -> tuple[int, ...]:
    """Whole (y, x) planes, as many rows as fit in ≈ target_bytes (float32), one time point."""
    plane = 4 * int(np.prod(shape[-2:]))
    rows = int(max(1, min(shape[-3], target_bytes // max(plane, 1))))
    return (1,) * (len(shape) - 3) + (rows, *shape[-2:])


def write_volume(
    path: str | os.PathLike,
    volume: Any,
    attrs: dict[str, Any],
    *,
    overwrite: bool = False,
    chunks: tuple[int, ...] | None = None,
    pixel_size_nm: float | None = None,
) -> Path:
    """Write a (z, y, x) or (t, z, y, x) volume (attenuation per pixel) as an OME-Zarr image.

    ``volume`` may be any array-like sliceable along its first axis (written slab by slab).
    ``attrs`` goes to the root attribute ``flytomo`` (JSON-cleaned, ``version`` added).
    FlytomoError when ``path`` exists and not ``overwrite``; on any error nothing is left.
    """
    path = Path(path)
    shape = tuple(int(s) for s in np.shape(volume))
    with atomic_path(path, overwrite=overwrite, folder=True) as tmp:
        array = _create(tmp, shape, chunks, attrs, pixel_size_nm)
        step = array.chunks[0]
        for i in range(0, shape[0], step):
            array[i : i + step] = np.asarray(volume[i : i + step], dtype=np.float32)
    return path


def create_volume(
    path: str | os.PathLike,
    shape: tuple[int, ...],
    chunks: tuple[int, ...] | None,
    attrs: dict[str, Any],
    *,
    overwrite: bool = False,
    resume: bool = False,
    pixel_size_nm: float | None = None,
    first_row: int = 0,
    fill_value: float = 0.0,
    time_step_s: float | None = None,
) -> zarr.Array:
    """Create an empty OME-Zarr store at :func:`partial_path` (``path`` appears at finalize).

    shape : (z, y, x) or (t, z, y, x).  chunks : default :func:`default_chunks`.
    resume : reopen an existing partial store of the same shape and chunks (its regions
        already written are kept; its provenance is replaced by ``attrs``); a partial store
        of another shape, or any partial store without ``resume``, is replaced.
    Returns the array ``0`` (writable: ``array[t, z0:z1] = chunk``). Call once per store
    (one process); other workers open the partial store with
    ``open_volume(partial_path(path), mode="r+")`` and write their own chunks.
    first_row : the detector row of the volume's first slice (``--rows A:B``: A), an OME
        translation along z, so partial volumes of one scan overlay where they belong.
    time_step_s : (t, z, y, x) only: the scans' even spacing (:func:`even_time_step_s`), else None.
    FlytomoError when ``path`` exists and not ``overwrite``.
    """
    path = Path(path)
    check_target(path, overwrite, folder=True)
    tmp = partial_path(path)
    shape = tuple(int(s) for s in shape)
    if resume and tmp.exists():
        array, _ = open_volume(tmp, mode="r+")
        want = tuple(chunks) if chunks is not None else default_chunks(shape)
        if tuple(array.shape) == shape and tuple(array.chunks) == want:
            zarr.open_group(str(tmp), mode="r+", zarr_format=2).attrs["flytomo"] = _provenance(attrs)
            return array
    remove(tmp)
    return _create(tmp, shape, chunks, attrs, pixel_size_nm, fill_value, first_row, time_step_s)


def check_in_progress(path: str | os.PathLike) -> None:
    """FlytomoError where the store in progress of ``path`` lost its group or array metadata while
    a command wrote it (removed by hand or a scratch purge: chunks written since would make
    folders again, and the store be renamed into place holding nothing readable)."""
    tmp = partial_path(path)
    if not ((tmp / ".zgroup").is_file() and (tmp / ARRAY / ".zarray").is_file()):
        raise FlytomoError(path, f"its store in progress ({tmp.name}) was removed while this command wrote it "
                                 "(by hand, or a scratch clean-up?): nothing of it is kept; run the same command again")


def finalize(path: str | os.PathLike, *, overwrite: bool = False, attrs: dict[str, Any] | None = None) -> Path:
    """Rename the store made by :func:`create_volume` to ``path`` (optionally replacing its
    ``flytomo`` provenance first). FlytomoError if there is no such store, or ``path`` exists
    and not ``overwrite``."""
    path = Path(path)
    tmp = partial_path(path)
    if not tmp.is_dir():
        raise FlytomoError(path, f"no store in progress to finalize (expected {tmp.name})")
    check_in_progress(path)
    if attrs is not None:
        zarr.open_group(str(tmp), mode="r+", zarr_format=2).attrs["flytomo"] = _provenance(attrs)
    if path.exists() and not overwrite:
        raise FlytomoError(path, "already exists (--overwrite, or overwrite=True in Python, replaces it)")
    remove(tmp / ROWS_DONE)
    publish(tmp, path, overwrite)
    return path


#: the folder in a store in progress where :func:`mark_rows_done` notes each row range written
ROWS_DONE = ".rows_done"


def mark_rows_done(path: str | os.PathLike, z0: int, z1: int) -> None:
    """Note that rows ``z0:z1`` (volume indices) of the store in progress for ``path`` are written
    (after the write: a range cut short by a kill is not noted, so it is written again)."""
    folder = partial_path(path) / ROWS_DONE
    folder.mkdir(exist_ok=True)
    (folder / f"{int(z0)}-{int(z1)}").touch()


def rows_done(path: str | os.PathLike, attrs: dict[str, Any], keys: tuple[str, ...]) -> set[tuple[int, int]]:
    """Row ranges (z0, z1) a killed run left written in the store in progress for ``path``, where
    its provenance equals ``attrs`` in every one of ``keys`` (the same input and settings); an
    empty set where there is no such store or it was begun otherwise."""
    tmp = partial_path(path)
    folder = tmp / ROWS_DONE
    if not folder.is_dir():
        return set()
    try:
        old = dict(zarr.open_group(str(tmp), mode="r", zarr_format=2).attrs.get("flytomo") or {})
    except Exception:  # a store cut short before its metadata: nothing to resume
        return set()
    new = _jsonable(attrs)
    if any(old.get(k) != new.get(k) for k in keys):
        return set()
    done = set()
    for p in folder.iterdir():
        if m := re.fullmatch(r"(\d+)-(\d+)", p.name):
            done.add((int(m[1]), int(m[2])))
    return done


def discard(path: str | os.PathLike) -> None:
    """Remove the store in progress for ``path`` (after a failure); no error if there is none."""
    remove(partial_path(path))


def refuse_partial(path: Path) -> None:
    """FlytomoError where ``path`` is a store :func:`create_volume` or :func:`write_volume` is still
    building (``.NAME.partial``, ``.NAME.partial-TAG``), or one a killed command left: its unwritten
    slices read as zeros, so it must never pass for a volume."""
    if re.fullmatch(r"\..+\.partial(-.+)?", Path(path).name):
        raise FlytomoError(path, "a store still being written, or left half-written by a killed flytomo recon: "
                                 "not a volume; run that recon again for a complete one")


def open_volume(path: str | os.PathLike, mode: str = "r") -> tuple[zarr.Array, dict[str, Any]]:
    """(array ``0``, root attribute ``flytomo``) of an OME-Zarr store written here.

    mode : "r" (read) or "r+" (write regions). FlytomoError for a missing path, a folder that
    is not a zarr group, or a group without array ``0``.
    """
    path = Path(path)
    if not path.exists():
        raise FlytomoError(path, "no such volume store")
    if mode == "r":
        refuse_partial(path)
    try:
        group = zarr.open_group(str(path), mode=mode)
    except Exception as err:  # zarr raises several types for a folder that is not a group
        try:
            shape = zarr.open_array(str(path), mode="r").shape
        except Exception:
            raise FlytomoError(path, f"not a zarr group ({type(err).__name__}: {err})") from None
        raise FlytomoError(path, f"is a bare zarr array of shape {tuple(shape)}, not an OME-Zarr volume (a group whose "
                                 f"array '{ARRAY}' is the volume, as flytomo recon writes); save it as .npy or a TIFF "
                                 "stack, or inside such a group") from None
    if ARRAY not in group or not isinstance(group[ARRAY], zarr.Array):
        raise FlytomoError(path, f"store has no array '{ARRAY}'")
    return group[ARRAY], dict(group.attrs.get("flytomo", {}))


def _create(store: Path, shape: tuple[int, ...], chunks: tuple[int, ...] | None, attrs: dict[str, Any],
            pixel_size_nm: float | None, fill_value: float = 0.0, first_row: int = 0,
            time_step_s: float | None = None) -> zarr.Array:
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise FlytomoError(store, f"a volume is (z, y, x) or (t, z, y, x), got shape {shape}")
    chunks = tuple(int(c) for c in chunks) if chunks is not None else default_chunks(shape)
    root = {"multiscales": multiscales(len(shape), pixel_size_nm, store.name, time_step_s, first_row=first_row),
            "flytomo": _provenance(attrs)}
    group = zarr.open_group(str(store), mode="w", zarr_format=2, attributes=root)
    return group.create_array(ARRAY, shape=shape, chunks=chunks, dtype="float32", fill_value=fill_value,
                              chunk_key_encoding={"name": "v2", "separator": "/"})


#: scan starts this far (a fraction of the step) from an even grid still make an even time axis
EVEN_TIME_TOLERANCE = 0.05


def even_time_step_s(starts: list[float | None]) -> float | None:
    """The step (s) of the scans' start times where they lie on an even grid (each within
    :data:`EVEN_TIME_TOLERANCE` of a step from it), the only time axis OME-Zarr 0.4 can state;
    None for fewer than two starts, one unknown, or uneven ones (a hold without scans)."""
    if len(starts) < 2 or any(t is None or not np.isfinite(t) for t in starts):
        return None
    t = np.sort(np.asarray(starts, dtype=np.float64))
    step = (t[-1] - t[0]) / (t.size - 1)
    if step <= 0:
        return None
    grid = t[0] + step * np.arange(t.size)
    return float(step) if np.abs(t - grid).max() <= EVEN_TIME_TOLERANCE * step else None


def multiscales(ndim: int, pixel_size_nm: float | None, name: str, time_step_s: float | None = None,
                first_row: int = 0) -> list[dict[str, Any]]:
    """OME-Zarr 0.4 ``multiscales`` of one level, (z, y, x) or (t, z, y, x): voxels of
    ``pixel_size_nm`` (in nanometres; unit-less 1 where unknown), time points ``time_step_s``
    apart (seconds since the first scan's start; None: scans unevenly spaced or untimed, a
    unit-less index — the scans' own times are in ``flytomo`` -> ``scans`` either way), the first
    slice at detector row ``first_row`` (a translation along z where it is not 0)."""
    space: dict[str, Any] = {"type": "space"}
    if pixel_size_nm is not None:
        space["unit"] = "nanometer"
    axes = [{"name": a, **space} for a in ("z", "y", "x")]
    scale = [float(pixel_size_nm) if pixel_size_nm is not None else 1.0] * 3
    if ndim == 4:
        axes.insert(0, {"name": "t", "type": "time", **({"unit": "second"} if time_step_s else {})})
        scale.insert(0, float(time_step_s or 1.0))
    name = name.split(".partial")[0].lstrip(".")
    transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
    if first_row:
        shift = [0.0] * len(scale)
        shift[-3] = float(first_row) * scale[-3]
        transforms.append({"type": "translation", "translation": shift})
    return [{
        "version": NGFF_VERSION,
        "name": name,
        "axes": axes,
        "datasets": [{"path": ARRAY, "coordinateTransformations": transforms}],
        "type": "none",
        "metadata": {"description": "flytomo reconstruction, attenuation per pixel"},
    }]


def _provenance(attrs: dict[str, Any]) -> dict[str, Any]:
    out = _jsonable(dict(attrs))
    out["version"] = recon.__version__
    return out


def _jsonable(x: Any) -> Any:
    """Plain JSON: numpy scalars/arrays → numbers/lists, paths → str, NaN/inf → None."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    raise TypeError(f"provenance value of type {type(x).__name__} is not JSON: {x!r}")
