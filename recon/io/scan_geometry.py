"""The geometry of an open scan: user overrides first, then the file's metadata, then defaults."""
from __future__ import annotations

from recon.geometry import ScanGeometry
from recon.io.center import find_center
from recon.io.preprocess import line_integrals


def scan_geometry(reader, *, blur_angle_deg: float | None = None, center: float | str | None = None,
                  rows: tuple[int, int] | None = None) -> ScanGeometry:
    """Geometry of an open scan: the user's overrides, else the file's metadata, else defaults.

    ``center='auto'`` finds the axis from (up to) 16 rows in the middle of ``rows``.
    """
    meta = reader.metadata or {}
    blur = blur_angle_deg if blur_angle_deg is not None else meta.get("blur_angle_deg")
    n_angles, n_rows, n_cols = reader.shape
    if center == "auto":
        z0, z1 = rows or (0, n_rows)
        mid = (z0 + z1) // 2
        a, b = max(z0, mid - 8), min(z1, mid + 8)
        center = find_center(line_integrals(reader.read(a, b)), reader.angles_deg)
    elif center is None and meta.get("center") is not None:
        center = float(meta["center"])
    return ScanGeometry.create(reader.angles_deg, n_cols, center=center, blur_angle_deg=blur)
