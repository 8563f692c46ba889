"""NeXus NXtomo files: one frame stack, its frames told apart by ``image_key``.

The entry is the NXentry whose ``definition`` is "NXtomo" (else the first entry holding the
standard paths). In it: frames ``instrument/detector/data`` (or ``data/data``), (frame, row,
col); ``instrument/detector/image_key_control`` where present (as tomoscan reads it: −1
alignment, frames taken after the scan to check for drift, which are not projections of the
scan), else ``image_key``: 0 projection, 1 flat, 2 dark, 3 invalid (alignment and invalid frames
are skipped; without ``image_key_control``, projections at the end that step back to angles the
scan already took are taken as alignment frames and skipped, with a warning: see
:func:`return_frames`); ``sample/rotation_angle`` (or ``data/rotation_angle``), one per frame, in degrees
unless its ``units`` attribute says radians. A file with several NXtomo entries (``entry0000``,
``entry0001``…) holds several scans: ``FILE::entry0001`` names one (:func:`entry_names`;
``flytomo init`` and an experiment's ``scans`` take each entry as a scan); opened plainly it
is read from the first, with a warning. No darks: dark level 0; no flats:
normalised float data only. Optional metadata: ``start_time`` (ISO date),
``instrument/beam/incident_energy`` or ``beam/incident_energy`` (keV, or ``units``),
``instrument/detector/x_pixel_size`` (with a ``units`` attribute), ``scan_id``; blur
information as for FXI.
Rows z0:z1 of the frames of one kind are read as one hyperslab per run of consecutive frames.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recon.errors import FlytomoError
from recon.io._atomic import atomic_path
from recon.io._h5 import dataset, first_dataset, read_small, write_stack
from recon.io.metadata import (angles_in_degrees, as_float, as_text, assume, dataset_pixel_size_nm,
                               exposure_middles, lookup, record_blur, scan_duration_s, scan_time_fields)
from recon.io.scan import HDF5Scan, Stack, scan_arrays

FORMAT = "nxtomo"
#: where a scan's start is recorded (in its entry)
START_TIME_NAMES = ("start_time", "scan_time")
ALIGNMENT, PROJECTION, FLAT, DARK, INVALID = -1, 0, 1, 2, 3
_DATA = ("instrument/detector/data", "data/data")
_KEY = ("instrument/detector/image_key", "data/image_key")
_CONTROL = ("instrument/detector/image_key_control", "data/image_key_control")
_ANGLE = ("sample/rotation_angle", "data/rotation_angle")


def _entries(f: h5py.File) -> list[h5py.Group]:
    """Candidate entries: NXtomo-defined first, then other groups holding frame data."""
    groups = [g for g in f.values() if isinstance(g, h5py.Group)]

    def definition(g: h5py.Group) -> str:
        d = g.get("definition")
        value = d[()] if isinstance(d, h5py.Dataset) else g.attrs.get("definition")
        return (as_text(value) or "").lower()

    tomo = [g for g in groups if definition(g) == "nxtomo"]
    other = [g for g in groups if g not in tomo and first_dataset(g, _DATA) and first_dataset(g, _KEY)]
    return tomo + other


def entry_names(f: h5py.File) -> list[str]:
    """Names of the entries that hold a scan, NXtomo-defined first (``["entry0000", …]``)."""
    return [g.name.strip("/") for g in _entries(f)]


def detect(f: h5py.File) -> bool:
    """An NXtomo file has an entry defined as NXtomo, or one with frame data and image_key."""
    return bool(_entries(f))


def open_nxtomo(path: str | os.PathLike, f: h5py.File, entry_name: str | None = None) -> HDF5Scan:
    """Reader for the open NXtomo file ``f`` at ``path``: its entry ``entry_name``, or the first."""
    path = Path(path)
    entries = _entries(f)
    if entry_name is not None:
        chosen = [e for e in entries if e.name.strip("/") == entry_name.strip("/")]
        if not chosen:
            raise FlytomoError(path, f"no scan entry '{entry_name}' (entries: "
                               f"{', '.join(entry_names(f)[:6]) or 'none'})")
        entry = chosen[0]
    else:
        entry = entries[0]
        if len(entries) > 1:
            others = ", ".join(e.name.strip("/") for e in entries[1:4]) + (" …" if len(entries) > 4 else "")
            assume(path, f"{len(entries)} NXtomo entries: reading '{entry.name.strip('/')}' only (not {others}); "
                         f"name one as {path.name}::{entries[1].name.strip('/')}, or give the file to "
                         "flytomo init, which takes every entry as a scan")
    names = {}
    for key, candidates, what in (("data", _DATA, "frames"), ("key", _KEY, "image_key"), ("angle", _ANGLE, "rotation angles")):
        found = first_dataset(entry, candidates)
        if found is None:
            raise FlytomoError(path, f"dataset '{entry.name.strip('/')}/{candidates[0]}' ({what}) is missing")
        names[key] = f"{entry.name}/{found}"
    control = first_dataset(entry, _CONTROL)
    if control is not None:
        names["key"] = f"{entry.name}/{control}"
    frames = dataset(f, names["data"], path, "frames")
    if frames.ndim != 3:
        raise FlytomoError(path, f"dataset '{names['data']}' should be (frame, row, col), has shape {frames.shape}")
    n_frames = frames.shape[0]
    keys = read_small(dataset(f, names["key"], path), path).astype(np.int64).reshape(-1)
    angles_all = angles_in_degrees(dataset(f, names["angle"], path), path)
    if keys.size != n_frames:
        raise FlytomoError(path, f"'{names['key']}' has {keys.size} image keys for {n_frames} frames in '{names['data']}'")
    if angles_all.size != n_frames:
        raise FlytomoError(path, f"{angles_all.size} rotation angles for {n_frames} frames in '{names['data']}'")
    unknown = ~np.isin(keys, (ALIGNMENT, PROJECTION, FLAT, DARK, INVALID))
    if unknown.any():
        raise FlytomoError(path, f"{int(unknown.sum())} frames in '{names['key']}' have a key other than -1, 0, 1, 2, 3")
    select = {k: np.nonzero(keys == k)[0] for k in (PROJECTION, FLAT, DARK)}
    if control is None:
        n_back = return_frames(angles_all[select[PROJECTION]], select[PROJECTION])
        if n_back:
            back = angles_all[select[PROJECTION][-n_back:]]
            assume(path, f"no image_key_control: the last {n_back} projections step back to angles already "
                         f"taken ({', '.join(f'{a:g}' for a in back[:5])}{' …' if n_back > 5 else ''}°): "
                         "taken as alignment frames, not used")
            select[PROJECTION] = select[PROJECTION][:-n_back]
    meta: dict[str, Any] = {
        "scan_id": _int(lookup(entry, "scan_id")),
        **scan_time_fields(lookup(entry, *START_TIME_NAMES), path),
        "energy_keV": _energy_keV(entry),
        "pixel_size_nm": dataset_pixel_size_nm(entry.get("instrument/detector/x_pixel_size"), "m"),  # NeXus: SI
    }
    angles = exposure_middles((entry, f), angles_all[select[PROJECTION]], meta)  # the entry's, else the root's
    if (duration := scan_duration_s((entry, f), angles, meta["scan_time"], path)) is not None:
        meta["duration_s"] = duration
    data = names["data"]
    return HDF5Scan.checked(
        path, FORMAT, f,
        Stack(data, select[PROJECTION], "projections"),
        _stack(data, select[FLAT], "flat fields", FLAT),
        _stack(data, select[DARK], "dark fields", DARK),
        angles, meta,
    )


def return_frames(angles_deg: np.ndarray, frames: np.ndarray | None = None) -> int:
    """How many projections at the end of a scan are alignment ('return') frames.

    angles_deg : (n,) rotation angles of the image_key-0 frames in frame order, degrees.
    frames : (n,) their frame indices in the file, or None.
    A candidate tail starts at the first step against the rotation direction (the sign of
    the median step) or, with ``frames``, at the last run of consecutive frames after other
    frames (flats at the end, then return frames). The longest candidate counts when it is
    short (at most max(10, 10 % of n) frames), steps back somewhere, and lies within the
    angles the rest of the scan covered (± one step). Else 0: a scan stored wrapped at 360°,
    back and forth, or with flats every few frames is kept whole.
    """
    a = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    if a.size < 4 or not np.all(np.isfinite(a)):
        return 0
    d = np.diff(a)
    direction, step = np.sign(np.median(d)), float(np.median(np.abs(d)))
    if direction == 0:
        return 0
    starts = [int(i) + 1 for i in np.nonzero(direction * d < 0)[0][:1]]
    if frames is not None:
        gaps = np.nonzero(np.diff(np.asarray(frames).reshape(-1)) > 1)[0]
        starts += [int(gaps[-1]) + 1] if gaps.size else []
    for start in sorted(starts):
        run, tail = a[:start], a[start:]
        short = tail.size <= max(10, 0.1 * a.size)
        steps_back = np.any(direction * np.diff(np.r_[run[-1], tail]) < 0)
        inside = np.all((tail >= run.min() - step) & (tail <= run.max() + step))
        if short and steps_back and inside:
            return int(tail.size)
    return 0


def _int(value: Any) -> int | None:
    x = as_float(value)
    return None if x is None else int(x)


def _stack(data: str, frames: np.ndarray, what: str, key: int) -> Stack:
    """The frames with image key ``key``, or an absent stack (name None) when there are none."""
    return Stack(data, frames, f"{what}, image_key {key}") if frames.size else Stack(None, what=f"no frames with image_key {key}")


def _energy_keV(entry: h5py.Group) -> float | None:
    """Incident energy in keV (``units`` keV or eV; keV when absent), None if not recorded."""
    ds = entry.get(first_dataset(entry, ("instrument/beam/incident_energy", "beam/incident_energy")) or "")
    if not isinstance(ds, h5py.Dataset) or ds.size != 1:
        return None
    value = as_float(ds[()])
    factor = {"kev": 1.0, "ev": 1e-3}.get((as_text(ds.attrs.get("units")) or "kev").lower())
    return None if value is None or factor is None else value * factor


def write_nxtomo(
    path: str | os.PathLike,
    tomo: Any,
    flats: np.ndarray | None = None,
    darks: np.ndarray | None = None,
    angles_deg: np.ndarray | None = None,
    *,
    scan_id: int | None = None,
    scan_time: float | None = None,
    energy_keV: float | None = None,
    pixel_size_nm: float | None = None,
    blur_angle_deg: float | None = None,
    compression: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a scan as an NXtomo file, atomically: frames in the order darks, the first half of
    the flats, projections, the other flats (as beamlines record them), with image_key and
    rotation_angle (degrees) per frame; ``entry/data`` links to them. Arguments as ``write_fxi``;
    scan_id and scan_time (s) go to ``entry/scan_id``, ``entry/scan_time``."""
    path = Path(path)
    tomo, flats, darks, angles, scan_blur = scan_arrays(path, tomo, flats, darks, angles_deg)
    blur = scan_blur if blur_angle_deg is None else float(blur_angle_deg)
    k_before = (flats.shape[0] + 1) // 2
    dtype = np.result_type(tomo, flats, darks)
    frames = np.concatenate([darks, flats[:k_before], tomo, flats[k_before:]]).astype(dtype, copy=False)
    keys = np.concatenate([np.full(darks.shape[0], DARK), np.full(k_before, FLAT), np.full(tomo.shape[0], PROJECTION),
                           np.full(flats.shape[0] - k_before, FLAT)]).astype(np.int32)
    rot = np.concatenate([np.full(darks.shape[0] + k_before, angles[0]), angles,
                          np.full(flats.shape[0] - k_before, angles[-1])])
    with atomic_path(path, overwrite=overwrite, folder=False) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["default"] = "entry"
        entry = _group(f, "entry", "NXentry")
        entry["definition"] = "NXtomo"
        if scan_id is not None:
            entry["scan_id"] = int(scan_id)
        if scan_time is not None:
            entry["scan_time"] = float(scan_time)
        detector = _group(_group(entry, "instrument", "NXinstrument"), "detector", "NXdetector")
        write_stack(detector, "data", frames, compression)
        detector["image_key"] = keys
        sample = _group(entry, "sample", "NXsample")
        sample["rotation_angle"] = rot
        sample["rotation_angle"].attrs["units"] = "degree"
        if pixel_size_nm is not None:
            detector["x_pixel_size"] = detector["y_pixel_size"] = float(pixel_size_nm)
            detector["x_pixel_size"].attrs["units"] = detector["y_pixel_size"].attrs["units"] = "nm"
        if energy_keV is not None:
            beam = _group(entry["instrument"], "beam", "NXbeam")
            beam["incident_energy"] = float(energy_keV)
            beam["incident_energy"].attrs["units"] = "keV"
        data = _group(entry, "data", "NXdata")
        data.attrs["signal"] = "data"
        data["data"], data["image_key"], data["rotation_angle"] = detector["data"], detector["image_key"], sample["rotation_angle"]
        record_blur(f, blur)
    return path


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    g = parent.create_group(name)
    g.attrs["NX_class"] = nx_class
    return g
