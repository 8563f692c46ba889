"""Data Exchange HDF5 files (APS/tomopy ``dxchange`` layout).

``/exchange/data`` (angle, row, col) projections, ``/exchange/data_white`` (k, row, col)
flats, ``/exchange/data_dark`` (k, row, col) darks, ``/exchange/theta`` (angle,) degrees.
Optional: root attributes or datasets ``scan_id``, ``scan_time``, ``energy_keV``,
``pixel_size_nm``; blur information as for FXI (``blur_angle_deg``, ``angle_reference``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recon.io._atomic import atomic_path
from recon.io._h5 import dataset, read_small, write_stack
from recon.io.metadata import as_float, exposure_middles, lookup, parse_pixel_size_nm, parse_time_s, record_blur
from recon.io.scan import HDF5Scan, Stack, scan_arrays

FORMAT = "dxchange"


def detect(f: h5py.File) -> bool:
    """A Data Exchange file has the dataset ``/exchange/data``."""
    return isinstance(f.get("exchange/data"), h5py.Dataset)


def open_dxchange(path: str | os.PathLike, f: h5py.File) -> HDF5Scan:
    """Reader for the open Data Exchange file ``f`` at ``path``."""
    path = Path(path)
    theta = dataset(f, "exchange/theta", path, "rotation angles, degrees")
    angles = read_small(theta, path).astype(np.float64).reshape(-1)
    units = str(theta.attrs.get("units", "deg")).lower()
    if units.startswith("rad"):
        angles = np.rad2deg(angles)
    scan_id = as_float(lookup(f, "scan_id"))
    meta: dict[str, Any] = {
        "scan_id": None if scan_id is None else int(scan_id),
        "scan_time": parse_time_s(lookup(f, "scan_time")),
        "energy_keV": as_float(lookup(f, "energy_keV")),
        "pixel_size_nm": parse_pixel_size_nm(lookup(f, "pixel_size_nm")),
    }
    angles = exposure_middles(f, angles, meta)
    return HDF5Scan.checked(
        path, FORMAT, f,
        Stack("exchange/data", None, "projections"),
        Stack("exchange/data_white", None, "flat fields"),
        Stack("exchange/data_dark", None, "dark fields"),
        angles, meta,
    )


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
    with atomic_path(path, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
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
