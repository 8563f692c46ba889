"""The geometry of an open scan: user overrides first, then the file's metadata, then defaults."""
from __future__ import annotations

from recon.errors import FlytomoError
from recon.geometry import ScanGeometry
from recon.io.center import find_center
from recon.io.metadata import assume
from recon.io.preprocess import line_integrals


def scan_geometry(reader, *, blur_angle_deg: float | None = None, center: float | str | None = None,
                  rows: tuple[int, int] | None = None) -> ScanGeometry:
    """Geometry of an open scan: the user's overrides, else the file's metadata, else defaults.

    center : a detector column; ``"auto"``: found from (up to) 16 rows in the middle of
        ``rows`` (:func:`recon.io.center.find_center`); ``"middle"``: (n_columns − 1)/2;
        ``None`` (the default): the file's recorded center, else ``"auto"`` — a real axis is
        seldom on the detector's middle column, and half a pixel off doubles every edge of a
        360° scan. Where the search cannot run (too few angles or columns), the middle, with
        a warning.
    """
    meta = reader.metadata or {}
    blur = blur_angle_deg if blur_angle_deg is not None else meta.get("blur_angle_deg")
    n_angles, n_rows, n_cols = reader.shape
    if center is None:
        center = float(meta["center"]) if meta.get("center") is not None else "auto"
    if center == "middle":
        center = None
    elif center == "auto":
        z0, z1 = rows or (0, n_rows)
        mid = (z0 + z1) // 2
        a, b = max(z0, mid - 8), min(z1, mid + 8)
        try:
            center = find_center(line_integrals(reader.read(a, b)), reader.angles_deg)
        except FlytomoError as err:
            assume(getattr(reader, "path", "scan"), f"rotation axis not found ({err.problem}): "
                                                    f"the detector's middle column {(n_cols - 1) / 2:g} is used")
            center = None
    return ScanGeometry.create(reader.angles_deg, n_cols, center=center, blur_angle_deg=blur)
