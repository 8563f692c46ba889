"""Data Exchange HDF5 files (APS/tomopy ``dxchange`` layout).

``/exchange/data`` (angle, row, col) projections, ``/exchange/data_white`` (k, row, col)
flats, ``/exchange/data_dark`` (k, row, col) darks, ``/exchange/theta`` (angle,) degrees (the
spec; a ``units`` attribute, or values spanning ≤ 2π, mean radians). As
``dxchange.read_aps_32id``: without theta the angles are taken evenly over 0–180° inclusive;
without darks the dark level is 0; without flats the data must be normalised floats (warnings
say so). Optional: root attributes or datasets ``scan_id``, ``scan_time``, ``energy_keV``,
``pixel_size_nm``, else the APS places ``/process/acquisition/start_date``,
``/measurement/instrument/monochromator/energy`` (keV) and
``/measurement/instrument/detection_system/objective/resolution`` (µm unless its ``units``
say otherwise); blur information as for FXI (``blur_angle_deg``, ``angle_reference``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recon.io._atomic import atomic_path
from recon.io._h5 import dataset, first_dataset, write_stack
from recon.io.metadata import (angles_in_degrees, as_float, assume, dataset_pixel_size_nm, exposure_middles,
                               lookup, parse_pixel_size_nm, record_blur, scan_duration_s, scan_time_fields)
from recon.io.scan import HDF5Scan, Stack, scan_arrays

FORMAT = "dxchange"
#: where a scan's start is recorded (root attribute or dataset; APS's place)
START_TIME_NAMES = ("scan_time", "process/acquisition/start_date")


def detect(f: h5py.File) -> bool:
    """A Data Exchange file has the dataset ``/exchange/data``."""
    return isinstance(f.get("exchange/data"), h5py.Dataset)


def open_dxchange(path: str | os.PathLike, f: h5py.File) -> HDF5Scan:
    """Reader for the open Data Exchange file ``f`` at ``path``."""
    path = Path(path)
    if isinstance(f.get("exchange/theta"), h5py.Dataset):
        angles = angles_in_degrees(f["exchange/theta"], path)
    else:
        n = int(dataset(f, "exchange/data", path, "projections").shape[0])
        assume(path, f"no '/exchange/theta': {n} angles taken evenly over 0–180° inclusive (as dxchange does)")
        angles = np.linspace(0.0, 180.0, n)
    scan_id = as_float(lookup(f, "scan_id"))
    meta: dict[str, Any] = {
        "scan_id": None if scan_id is None else int(scan_id),
        **scan_time_fields(lookup(f, *START_TIME_NAMES), path),
        "energy_keV": as_float(lookup(f, "energy_keV", "measurement/instrument/monochromator/energy")),
        "pixel_size_nm": parse_pixel_size_nm(lookup(f, "pixel_size_nm")) or dataset_pixel_size_nm(
            f.get("measurement/instrument/detection_system/objective/resolution"), "um"),  # APS: the objective's
    }
    angles = exposure_middles(f, angles, meta)
    if (duration := scan_duration_s(f, angles, meta["scan_time"], path,
                                         ("end_time", "scan_end_time", "process/acquisition/end_date"))) is not None:
        meta["duration_s"] = duration
    return HDF5Scan.checked(
        path, FORMAT, f,
        Stack("exchange/data", None, "projections"),
        _stack(f, "exchange/data_white", "flat fields"),
        _stack(f, "exchange/data_dark", "dark fields"),
        angles, meta,
    )


def _stack(f: h5py.File, name: str, what: str) -> Stack:
    """The stack ``name``, or an absent one (name None) saying it is missing or empty."""
    if not first_dataset(f, (name,)):
        return Stack(None, what=f"'/{name}' is missing")
    return Stack(name, None, what) if f[name].ndim != 3 or f[name].shape[0] > 0 else Stack(None, what=f"'/{name}' is empty")


def write_dxchange(
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
    """Write a scan as a Data Exchange HDF5 file, atomically. Arguments as for ``write_fxi``
    (``tomo`` may be a scan object); theta is stored in degrees (attribute units="degrees");
    the metadata given are root attributes ``scan_id, scan_time, energy_keV, pixel_size_nm``."""
    path = Path(path)
    tomo, flats, darks, angles, scan_blur = scan_arrays(path, tomo, flats, darks, angles_deg)
    blur = scan_blur if blur_angle_deg is None else float(blur_angle_deg)
    with atomic_path(path, overwrite=overwrite, folder=False) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["implements"] = "exchange"
        ex = f.create_group("exchange")
        write_stack(ex, "data", tomo, compression)
        write_stack(ex, "data_white", flats, compression)
        write_stack(ex, "data_dark", darks, compression)
        ex["theta"] = angles
        ex["theta"].attrs["units"] = "degrees"
        record_blur(f, blur)
        for key, value in (("scan_id", scan_id), ("scan_time", scan_time), ("energy_keV", energy_keV),
                           ("pixel_size_nm", pixel_size_nm)):
            if value is not None:
                f.attrs[key] = value
    return path
