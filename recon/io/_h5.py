"""HDF5 access shared by the readers and writers: opening with one-line errors, dataset
look-ups that name what is missing, and reading rows z0:z1 of selected frames."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import h5py
import numpy as np

from recon.errors import FlytomoError

try:  # registers the filters detectors write with (bitshuffle-LZ4, Blosc, Zstd, LZ4…)
    import hdf5plugin  # noqa: F401
    _DECODERS = "h5py and hdf5plugin"
except ImportError:  # a dependency, but an environment may lack it
    _DECODERS = "h5py (pip install hdf5plugin adds the detectors' filters)"


#: what is said of projections given as TIFF files
TIFF_SCANS = ("raw scans are read from HDF5 files (FXI, Data Exchange or NXtomo), not TIFF projections; "
              "write them with their flats, darks and angles (degrees) as Data Exchange first "
              "(recon.io.write_dxchange, or h5py: /exchange/data, data_white, data_dark, theta)")


def open_h5(path: str | os.PathLike) -> h5py.File:
    """Open an HDF5 file read-only; FlytomoError for missing, empty, non-HDF5 or truncated files."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise FlytomoError(path, f"is a link to {os.readlink(path)}, which is missing")
        raise FlytomoError(path, "file not found")
    if path.is_dir():
        tiffs = any(p.suffix.lower() in (".tif", ".tiff") for p in (*path.glob("*"), *path.glob("*/*")))
        raise FlytomoError(path, "is a folder, not a scan file" + (f": {TIFF_SCANS}" if tiffs else ""))
    if path.stat().st_size == 0:
        raise FlytomoError(path, "file is empty")
    try:
        if not h5py.is_hdf5(path):
            with open(path, "rb") as fh:
                tiff = fh.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # TIFF, BigTIFF
            raise FlytomoError(path, f"a TIFF file: {TIFF_SCANS}" if tiff
                               else "not an HDF5 file (or its header is damaged)")
        # locking=False: read-only, and file locks fail on some parallel file systems
        return h5py.File(path, "r", locking=False)
    except FlytomoError:
        raise
    except OSError as err:
        if "already open for write" not in str(err):
            raise FlytomoError(path, f"cannot be read as HDF5 (truncated or corrupt?): {err}") from None
        try:  # a writer in SWMR mode (an acquisition still writing it) lets readers in
            return h5py.File(path, "r", locking=False, swmr=True)
        except OSError:
            raise FlytomoError(path, "is marked open for writing by another program: an acquisition still writing "
                                     "it (read it once it is closed), or a writer that crashed (h5clear -s clears "
                                     "the mark, once nothing writes the file)") from None
    except ValueError as err:
        raise FlytomoError(path, f"cannot be read as HDF5 (truncated or corrupt?): {err}") from None


def dataset(f: h5py.File, name: str, path: Path, what: str = "") -> h5py.Dataset:
    """The dataset ``name``; FlytomoError naming it when it is missing or not a dataset."""
    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        label = f" ({what})" if what else ""
        problem = "is a group, expected a dataset" if obj is not None else "is missing"
        raise FlytomoError(path, f"dataset '{name}'{label} {problem}")
    return obj


def first_dataset(f: h5py.File, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that is a dataset in ``f``, or None."""
    for name in names:
        if isinstance(f.get(name), h5py.Dataset):
            return name
    return None


def check_readable(ds: h5py.Dataset, path: Path) -> None:
    """FlytomoError when the frames of ``ds`` cannot be read here: compressed with an HDF5
    filter this installation lacks, or a virtual dataset whose source files are missing."""
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code, _, _, name = plist.get_filter(i)
        if not h5py.h5z.filter_avail(code):
            label = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
            raise FlytomoError(path, f"dataset '{ds.name}' is compressed with HDF5 filter {code} ({label or 'unknown'}), "
                                     f"which {_DECODERS} cannot decode")
    if ds.is_virtual:
        for source in ds.virtual_sources():
            if not _source_path(path, source.file_name).exists():
                raise FlytomoError(path, f"dataset '{ds.name}' is virtual and its source file "
                                         f"'{source.file_name}' is missing")


def _source_path(path: Path, name: str) -> Path:
    """Where a virtual dataset of file ``path`` finds its source file ``name`` ("." : itself;
    else beside it, else as named)."""
    return path if name == "." else path.parent / name if (path.parent / name).exists() else Path(name)


def read_small(ds: h5py.Dataset, path: Path) -> np.ndarray:
    """Read a whole small dataset (angles, keys, scalars), with read errors as FlytomoError."""
    try:
        return np.asarray(ds[()])
    except (OSError, ValueError, TypeError) as err:
        raise FlytomoError(path, f"cannot read dataset '{ds.name}' (truncated file?): {err}") from None


def runs(frames: np.ndarray) -> list[tuple[int, int]]:
    """Sorted frame indices as [start, stop) runs of consecutive frames."""
    if frames.size == 0:
        return []
    breaks = np.nonzero(np.diff(frames) != 1)[0] + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [frames.size]])
    return [(int(frames[a]), int(frames[b - 1]) + 1) for a, b in zip(starts, stops)]


def read_rows(ds: h5py.Dataset, frames: np.ndarray | None, z0: int, z1: int, path: Path) -> np.ndarray:
    """Rows z0:z1 of the selected frames of a (frame, row, col) or (row, col) dataset.

    Returns (k, z1 − z0, col) float32. Only hyperslabs are read: the whole frame range for
    ``frames=None``, else one slab per run of consecutive frame indices (sorted). Where the
    frames are compressed in chunks of more rows than asked for (a detector writes a whole
    frame per chunk), every read decompresses whole frames: rows from z0 up are then read
    as far as :func:`read_band_bytes` allows and kept, and later reads inside them are
    served from memory (the values are the same).
    """
    try:
        if ds.ndim == 2:
            return np.asarray(ds[z0:z1, :], dtype=np.float32)[None]
        if _compressed_across_rows(ds, z1 - z0, path):
            return _band_read(ds, frames, z0, z1, path)
        return _slab(ds, frames, z0, z1, np.float32)
    except (OSError, ValueError, TypeError) as err:
        raise FlytomoError(path, f"cannot read rows {z0}:{z1} of dataset '{ds.name}' (truncated file?): {err}") from None


def _slab(ds: h5py.Dataset, frames: np.ndarray | None, z0: int, z1: int, dtype: np.dtype) -> np.ndarray:
    """Rows z0:z1 of the selected frames of a 3-D dataset, as ``dtype``."""
    if frames is None:
        return np.asarray(ds[:, z0:z1, :], dtype=dtype)
    return np.concatenate([np.asarray(ds[a:b, z0:z1, :], dtype=dtype) for a, b in runs(frames)], axis=0)


def read_band_bytes() -> int:
    """Bytes of raw frames one process keeps from a dataset compressed across rows:
    ``FLYTOMO_READ_BAND_MB`` (default 512; 0 reads only the rows asked for)."""
    value = os.environ.get("FLYTOMO_READ_BAND_MB", "512")
    try:
        return max(0, int(float(value) * (1 << 20)))
    except ValueError:
        raise FlytomoError(None, f"FLYTOMO_READ_BAND_MB must be a number of MiB, got {value!r}") from None


def _compressed_across_rows(ds: h5py.Dataset, n_rows: int, path: Path) -> bool:
    """Whether reading ``n_rows`` rows of ``ds`` decompresses chunks of more rows; for a virtual
    dataset (nxtomomill's, over a detector's files), whether its first source's chunks do."""
    if ds.is_virtual:
        sources = ds.virtual_sources()
        if not sources:
            return False
        source = _source_path(path, sources[0].file_name)
        with h5py.File(source, "r", locking=False) as f:
            inner = f.get(sources[0].dset_name)
            return isinstance(inner, h5py.Dataset) and inner.ndim == 3 and _compressed_across_rows(inner, n_rows, source)
    return (ds.chunks is not None and ds.chunks[1] > n_rows
            and ds.id.get_create_plist().get_nfilters() > 0)


_band_lock = threading.Lock()
_bands: dict[tuple, tuple[int, int, np.ndarray]] = {}  # (file, dataset, frames) → (b0, b1, raw rows b0:b1)


def release_read_bands() -> None:
    """Drop the rows :func:`read_rows` keeps (the end of a reconstruction, before other work)."""
    with _band_lock:
        _bands.clear()


def _band_read(ds: h5py.Dataset, frames: np.ndarray | None, z0: int, z1: int, path: Path) -> np.ndarray:
    """Rows z0:z1 through the band kept for (file, dataset, frames); a new band from z0 up
    where they lie outside it. One file's bands are kept at a time."""
    st = path.stat()
    fkey = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    key = (fkey, ds.name, None if frames is None else frames.tobytes())
    with _band_lock:
        band = _bands.get(key)
        if band is None or not band[0] <= z0 < z1 <= band[1]:
            k = ds.shape[0] if frames is None else frames.size
            per_row = max(1, k * ds.shape[2] * ds.dtype.itemsize)
            b1 = min(ds.shape[1], max(z1, z0 + read_band_bytes() // per_row))
            for other in [o for o in _bands if o[0] != fkey or o == key]:
                del _bands[other]
            band = (z0, b1, _slab(ds, frames, z0, b1, ds.dtype))
            _bands[key] = band
        b0, _, raw = band
        return np.asarray(raw[:, z0 - b0:z1 - b0], dtype=np.float32)


def row_chunks(shape: tuple[int, ...], itemsize: int, target_bytes: int = 8 << 20) -> tuple[int, ...]:
    """HDF5 chunks (frames, rows, cols) holding every frame of 1–8 whole rows (≈ ≤ 8 MiB), so
    reading rows z0:z1 touches only the chunks of those rows."""
    if len(shape) == 2:
        return (max(1, min(8, shape[0])), shape[1])
    per_row = max(1, shape[0] * shape[2] * itemsize)
    rows = int(np.clip(target_bytes // per_row, 1, 8))
    return (shape[0], min(rows, shape[1]), shape[2])


def write_stack(group: h5py.Group, name: str, data: np.ndarray, compression: str | None) -> h5py.Dataset:
    """Write a (frame, row, col) stack chunked by rows; compression None or "gzip" (level 1)."""
    data = np.asarray(data)
    opts = {"compression": "gzip", "compression_opts": 1} if compression == "gzip" else {}
    if compression not in (None, "gzip"):
        raise ValueError(f"compression must be None or 'gzip', not {compression!r}")
    chunks = row_chunks(data.shape, data.dtype.itemsize) if data.ndim in (2, 3) and data.size else None
    return group.create_dataset(name, data=data, chunks=chunks, **opts)
