"""FXI beamline (NSLS-II 18-ID) fly-scan HDF5 files.

Datasets at the root: ``img_tomo`` (angle, row, col) counts; ``img_bkg`` (k, row, col) flats
and ``img_dark`` (k, row, col) darks, or their averages ``img_bkg_avg`` / ``img_dark_avg``
((row, col) or (1, row, col)) when the stacks are absent (no darks: dark level 0; no flats:
normalised float data only); ``angle`` (degrees; values spanning ≤ 2π are radians); ``X_eng`` (keV);
``scan_id``; ``scan_time`` (s, scan start; scalar, array or text); ``Pixel Size`` (a number
in nm or text such as "21.6nm"). Optional blur information (root attribute or dataset):
``blur_angle_deg``, or ``exposure_s`` × ``rotation_speed_deg_s``; ``angle_reference`` = "start"
marks angles recorded at exposure start, which are shifted by +Δθ/2 to exposure middles.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recon.io._atomic import atomic_path
from recon.io._h5 import dataset, first_dataset, write_stack
from recon.io.metadata import (angles_in_degrees, as_float, exposure_middles, lookup, parse_pixel_size_nm,
                               record_blur, scan_duration_s, scan_time_fields)
from recon.io.scan import HDF5Scan, Stack, scan_arrays

FORMAT = "fxi"
#: where a scan's start is recorded (root attribute or dataset)
START_TIME_NAMES = ("scan_time",)


def detect(f: h5py.File) -> bool:
    """An FXI file has ``img_tomo`` at the root."""
    return isinstance(f.get("img_tomo"), h5py.Dataset)


def _stack(f: h5py.File, names: tuple[str, str], what: str) -> Stack:
    """The frame stack, else its average, else an absent stack (name None) saying so."""
    stack, avg = names
    if isinstance(f.get(stack), h5py.Dataset) and f[stack].ndim == 3 and f[stack].shape[0] > 0:
        return Stack(stack, None, what)
    if first_dataset(f, (avg,)):
        return Stack(avg, None, what)
    state = "has no frames" if stack in f else "is missing"
    return Stack(None, what=f"'{stack}' {state}, and so is '{avg}'")


def open_fxi(path: str | os.PathLike, f: h5py.File) -> HDF5Scan:
    """Reader for the open FXI file ``f`` at ``path``."""
    path = Path(path)
    angles = angles_in_degrees(dataset(f, "angle", path, "rotation angles, degrees"), path)
    meta: dict[str, Any] = {
        "scan_id": _int_or_none(as_float(lookup(f, "scan_id"))),
        **scan_time_fields(lookup(f, *START_TIME_NAMES), path),
        "energy_keV": as_float(lookup(f, "X_eng")),
        "pixel_size_nm": parse_pixel_size_nm(lookup(f, "Pixel Size")),
    }
    angles = exposure_middles(f, angles, meta)
    if (duration := scan_duration_s(f, angles, meta["scan_time"], path)) is not None:
        meta["duration_s"] = duration
    return HDF5Scan.checked(
        path, FORMAT, f,
        Stack("img_tomo", None, "projections"),
        _stack(f, ("img_bkg", "img_bkg_avg"), "flat fields"),
        _stack(f, ("img_dark", "img_dark_avg"), "dark fields"),
        angles, meta,
    )


def _int_or_none(x: float | None) -> int | None:
    return None if x is None else int(x)


def write_fxi(
    path: str | os.PathLike,
    tomo: Any,
    flats: np.ndarray | None = None,
    darks: np.ndarray | None = None,
    angles_deg: np.ndarray | None = None,
    *,
    scan_id: int = 0,
    scan_time: float = 0.0,
    energy_keV: float = 8.0,
    pixel_size: str | float = "21.6nm",
    blur_angle_deg: float | None = None,
    scan_duration_s: float | None = None,
    compression: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a scan as an FXI HDF5 file, atomically (temporary name, then rename).

    tomo : (angle, row, col) counts — or a scan object with ``tomo, flats, darks,
        angles_deg[, blur_angle_deg]`` (e.g. ``recon.simulate.SimulatedScan``).
    flats, darks : (k, row, col) or (row, col) counts.  angles_deg : (angle,) exposure middles.
    scan_time : scan start, seconds.  energy_keV : X-ray energy.  pixel_size : nm or text.
    blur_angle_deg : recorded as root attribute ``blur_angle_deg`` (with angle_reference
        "middle"); default the scan object's blur angle when there is one.
    scan_duration_s : how long the scan took (s), recorded as root attribute
        ``scan_duration_s`` where given (a scan's temperature is read at its middle).
    compression : None or "gzip" (level 1). Datasets are chunked by rows.
    """
    path = Path(path)
    tomo, flats, darks, angles, scan_blur = scan_arrays(path, tomo, flats, darks, angles_deg)
    blur = scan_blur if blur_angle_deg is None else float(blur_angle_deg)
    with atomic_path(path, overwrite=overwrite, folder=False) as tmp, h5py.File(tmp, "w") as f:
        write_stack(f, "img_tomo", tomo, compression)
        write_stack(f, "img_bkg", flats, compression)
        write_stack(f, "img_dark", darks, compression)
        write_stack(f, "img_bkg_avg", flats.mean(axis=0, dtype=np.float64).astype(np.float32)[None], compression)
        write_stack(f, "img_dark_avg", darks.mean(axis=0, dtype=np.float64).astype(np.float32)[None], compression)
        f["angle"] = angles
        f["angle"].attrs["units"] = "degrees"  # a narrow scan is then never taken for radians
        f["X_eng"] = float(energy_keV)
        f["scan_id"] = int(scan_id)
        f["scan_time"] = float(scan_time)
        f["Pixel Size"] = pixel_size if isinstance(pixel_size, str) else float(pixel_size)
        if scan_duration_s is not None:
            f.attrs["scan_duration_s"] = float(scan_duration_s)
        record_blur(f, blur)
    return path
