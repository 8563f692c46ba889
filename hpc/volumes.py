"""Volumes reconstructed elsewhere (TIFF stacks, .npy, HDF5) as an experiment store, so that
``flytomo analyze`` measures them: one file is one scan, in natural order (scan_9 before
scan_10); a folder or glob of single-slice TIFFs is one volume.

The store (array ``0``, (t, z, y, x) float32; ``flytomo.scans`` with each scan's file) is a
float32 copy of the volumes, written inside the analysis folder. The files carry no scan
times: the table runs against the scan order, unless a scan list gives each file's time or
temperature (then a temperature log can be joined).
"""
from __future__ import annotations

import glob
import re
from pathlib import Path

import h5py
import numpy as np

from recon.errors import FlytomoError
from recon.io import create_volume, discard, finalize
from recon.io.readers import broken_external_links, natural_order

#: files read as one volume each
VOLUME_SUFFIXES = (".tif", ".tiff", ".npy", ".h5", ".hdf5", ".nxs")
#: datasets of raw scans (flats, darks, angles beside the projections): not volumes
RAW_SCAN_NAMES = ("exchange/data_white", "exchange/data_dark", "exchange/theta", "img_tomo", "img_bkg",
                  "img_dark", "entry/instrument/detector/image_key", "entry/data/image_key")
#: HDF5 dataset names taken first where a file holds several 3-D datasets
HDF5_VOLUME_NAMES = ("volume", "data", "recon", "reconstruction", "exchange/data", "entry/data/data")


def is_store(spec: str) -> bool:
    """Whether ``spec`` names a zarr store (or a path that does not exist: the store reader says so)."""
    path = Path(spec)
    if path.suffix == ".zarr" or any((path / name).exists() for name in (".zgroup", ".zarray", "zarr.json")):
        return True
    return not (path.is_file() or path.is_dir() or any(c in spec for c in "*?["))


def volume_files(spec: str) -> list[Path]:
    """The files ``spec`` names (a file, a folder, a glob) with a volume suffix, in natural
    order; FlytomoError where there are none."""
    path = Path(spec)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in VOLUME_SUFFIXES]
    else:
        files = [Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in VOLUME_SUFFIXES]
    if not files:
        raise FlytomoError(spec, f"no volume files there ({', '.join(VOLUME_SUFFIXES)}), and not an experiment "
                                 "store")
    return sorted(files, key=natural_order)


def _hdf5_volume(path: Path) -> np.ndarray:
    """The one 3-D dataset of an HDF5 file (or the first of :data:`HDF5_VOLUME_NAMES` where there are several)."""
    try:
        with h5py.File(path, "r") as f:
            raw = [name for name in RAW_SCAN_NAMES if name in f]
            if raw:
                raise FlytomoError(path, f"is a raw scan (it holds '{raw[0]}'): reconstruct it first (flytomo recon, "
                                         "or flytomo run for an experiment), then analyse the volumes")
            broken = broken_external_links(f, path.parent)
            if broken:
                raise FlytomoError(path, f"'{broken[0][0]}' links to {broken[0][1]}, which is missing")
            found: list[str] = []
            f.visititems(lambda name, obj: found.append(name)
                         if isinstance(obj, h5py.Dataset) and obj.ndim == 3 else None)
            if not found:
                raise FlytomoError(path, "holds no 3-D dataset (a volume (z, y, x))")
            name = next((n for n in HDF5_VOLUME_NAMES if n in found), found[0] if len(found) == 1 else None)
            if name is None:
                raise FlytomoError(path, f"holds several 3-D datasets ({', '.join(found[:4])}); keep the volume "
                                         f"alone in the file, or name it one of {', '.join(HDF5_VOLUME_NAMES)}")
            return f[name][()]
    except OSError as err:
        raise FlytomoError(path, f"not a readable HDF5 file ({err})") from None


def read_volume(path: Path) -> np.ndarray:
    """One file's volume (z, y, x), in its own type."""
    from hpc.commands.enhance import read_reconstruction

    if path.suffix.lower() in (".h5", ".hdf5", ".nxs"):
        return _checked(path, _hdf5_volume(path), single=False)
    volume, _, single = read_reconstruction(str(path))
    return _checked(path, np.asarray(volume), single)


def _checked(path: Path, volume: np.ndarray, single: bool) -> np.ndarray:
    """``volume`` where it is a volume (z, y, x) of numbers with voxels; FlytomoError naming
    ``path`` for one slice (``single``: a file of one (y, x) image), other shapes and types."""
    if single or volume.ndim == 2:
        raise FlytomoError(path, "is one slice (y, x): a crack volume fraction needs a volume (z, y, x) — a stack, "
                                 "or a folder holding only that scan's slices")
    if volume.ndim != 3 or not (np.issubdtype(volume.dtype, np.floating) or np.issubdtype(volume.dtype, np.integer)):
        raise FlytomoError(path, f"expected a volume (z, y, x) of numbers, got shape {volume.shape} {volume.dtype}")
    if 0 in volume.shape:
        raise FlytomoError(path, f"holds no voxels (shape {volume.shape})")
    return volume


def store_from_volumes(spec: str, files: list[Path], store: Path,
                       scan_list: str | Path | None = None, timezone: str | None = None) -> tuple[int, ...]:
    """Write the volumes ``files`` (:func:`volume_files` of ``spec``) into the experiment store
    ``store`` (replaced where it exists) → its shape (t, z, y, x). Every volume must have the
    first one's shape. ``scan_list``: a CSV of the files' times and/or temperatures
    (:func:`analysis.table.read_scan_list`), matched to the files by name or stem; every file
    must be on it; ``timezone``: the clock of its date-times written without a zone. The voxel
    size is the first TIFF's (ImageJ or OME metadata), where it records one."""
    from hpc.commands.enhance import read_reconstruction

    from hpc.commands.enhance import tiff_pixel_size_nm
    from recon.io.omezarr import even_time_step_s

    names = None
    tiffs = [f for f in files if f.suffix.lower() in (".tif", ".tiff")]
    first = None
    if tiffs and len(files) > 1:
        volume, _, single = read_reconstruction(str(tiffs[0]))
        if single:  # single-slice TIFFs: together one volume (one scan), never beside other files
            if len(tiffs) < len(files):
                other = next(f for f in files if f not in tiffs)
                raise FlytomoError(spec, f"mixes single-slice TIFFs (one volume together) with other files "
                                         f"({other.name}): give each scan's slices a folder of their own")
            first = np.asarray(read_reconstruction(spec)[0])
            name = re.sub(r"[*?\[\]]", "", Path(spec).stem).strip("_-. ") or Path(spec).parent.name or Path(spec).name
            files, names = [Path(spec)], [name]
        elif tiffs[0] == files[0]:  # read once
            first = _checked(files[0], np.asarray(volume), single)
    if first is None:
        first = read_volume(files[0])
    shape = (len(files), *first.shape)
    names = names or [f.stem for f in files]
    scans = [{"index": i, "scan_id": name, "file": str(f.resolve())} for i, (f, name) in enumerate(zip(files, names))]
    if scan_list is not None:
        _add_times(scans, files, scan_list, timezone)
    attrs = {"method": "imported", "source": spec, "scans": scans, "options": {}, "config": {}}
    pixel_nm = tiff_pixel_size_nm(tiffs[0]) if tiffs else None  # as Fiji or an OME-TIFF records it
    array = create_volume(store, shape, (1, min(16, shape[1]), *shape[2:]), attrs, overwrite=True,
                          pixel_size_nm=pixel_nm, time_step_s=even_time_step_s([s.get("start_time_s") for s in scans]))
    try:
        for i, f in enumerate(files):
            volume = first if i == 0 else read_volume(f)
            if volume.shape != first.shape:
                raise FlytomoError(f, f"volume of shape {volume.shape}, the first ({files[0].name}) is {first.shape}: "
                                      "one store needs one shape: analyse the volumes of each shape apart (their "
                                      "crack fractions are fractions of the particle, comparable across shapes), or "
                                      "resample them alike first")
            array[i] = np.asarray(volume, dtype=np.float32)
        finalize(store, overwrite=True)
    except BaseException:
        discard(store)
        raise
    return shape


def _add_times(scans: list[dict], files: list[Path], scan_list: str | Path, timezone: str | None = None) -> None:
    """Each scan's ``start_time_s``, ``duration_s`` and ``temperature_C`` from the scan list,
    where it gives them (``start_time_naive`` where its date-times carry no zone)."""
    from analysis.table import read_scan_list, scan_list_rows

    listed = read_scan_list(scan_list, timezone)
    by_name = scan_list_rows(listed)
    for scan, f in zip(scans, files):
        row = by_name.get(f.name) or by_name.get(f.stem)
        if row is None:
            raise FlytomoError(scan_list, f"does not list {f.name} (name or stem, in a file column)")
        if np.isfinite(row.time_s):
            scan["start_time_s"] = float(row.time_s)
            if listed.attrs.get("naive_times"):
                scan["start_time_naive"] = True
        if np.isfinite(row.duration_s):
            scan["duration_s"] = float(row.duration_s)
        if np.isfinite(row.temperature_C):
            scan["temperature_C"] = float(row.temperature_C)


__all__ = ["VOLUME_SUFFIXES", "is_store", "read_volume", "store_from_volumes", "volume_files"]
