"""Read-only access to an experiment store (see docs/architecture.md, "The experiment store").

The store is a zarr group with array ``0`` of shape (t, z, y, x) — or (z, y, x) for a
single-scan ``flytomo recon`` output — float32 attenuation per pixel, and a root attribute
``flytomo`` whose ``scans`` list holds one dict per time point
(``index, scan_id, start_time_s, mid_time_s, duration_s, temperature_C, ...``).
Volumes are read one time point at a time, and slab by slab (:class:`TimePoint`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import FlytomoError
from recon.io.metadata import as_float
from recon.io.omezarr import refuse_partial

__all__ = ["StoreInfo", "TimePoint", "open_store", "scan_times"]


def scan_times(scan: dict) -> tuple[float | None, float | None, float | None]:
    """(start_time_s, mid_time_s, duration_s) of a scan dict; a missing one is derived from
    the other two when possible, else ``None``."""
    start, mid, dur = (as_float(scan.get(k)) for k in ("start_time_s", "mid_time_s", "duration_s"))
    if mid is None and start is not None and dur is not None:
        mid = start + dur / 2
    if start is None and mid is not None and dur is not None:
        start = mid - dur / 2
    if dur is None and start is not None and mid is not None:
        dur = 2 * (mid - start)
    return start, mid, dur


class TimePoint:
    """One (z, y, x) volume of the store: ``shape``, and ``tp[z0:z1]`` reads rows z0:z1 only."""

    def __init__(self, array: Any, t: int | None) -> None:
        self._a = array
        self._t = t
        self.shape = tuple(int(s) for s in (array.shape[1:] if t is not None else array.shape))
        self.dtype = np.dtype(array.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._t is None:
            return np.asarray(self._a[key])
        if not isinstance(key, tuple):
            key = (key,)
        return np.asarray(self._a[(self._t, *key)])

    def __array__(self, dtype=None, copy=None):  # whole volume, for small stores only
        a = self[:]
        return a.astype(dtype) if dtype is not None else a


@dataclass
class StoreInfo:
    """What :func:`open_store` found. ``scans[i]`` belongs to time point ``i`` of array ``0``."""

    path: Path
    shape: tuple[int, ...]          # shape of array 0: (t, z, y, x) or (z, y, x)
    scans: list[dict]
    attrs: dict = field(default_factory=dict)  # the root attribute "flytomo"

    @property
    def is_series(self) -> bool:
        return len(self.shape) == 4

    @property
    def n_times(self) -> int:
        return self.shape[0] if self.is_series else 1

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        return tuple(self.shape[-3:])  # type: ignore[return-value]

    @property
    def method(self) -> str | None:
        return self.attrs.get("method")

    @property
    def experiment_name(self) -> str:
        """What the plots' titles call this store: the folder of the experiment config that made
        it (``flytomo init``'s DIR: every store ``run`` writes is ``experiment.zarr``), the folder
        ``analyze --out`` copied volumes made elsewhere into, else the store's own name."""
        cfg = self.attrs.get("config")
        made_by = cfg.get("config_file") if isinstance(cfg, dict) else None
        if isinstance(made_by, str) and Path(made_by).parent.name:
            return Path(made_by).parent.name
        if self.attrs.get("method") == "imported" and self.path.absolute().parent.name:
            return self.path.absolute().parent.name
        return self.path.name

    def time_point(self, t: int) -> TimePoint:
        """The (z, y, x) volume of time point ``t`` (lazy: reads slabs on indexing)."""
        if not 0 <= t < self.n_times:
            raise FlytomoError(self.path, f"time point {t} is outside 0..{self.n_times - 1}")
        arr = _open_array(self.path)
        return TimePoint(arr, t if self.is_series else None)


def _open_group(path: Path):
    import zarr

    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as err:  # zarr raises several types for "not a group"
        wanted = ("flytomo analyze reads the experiment stores that `flytomo run` and `flytomo recon` "
                  "write (a zarr group with array '0' and the attribute 'flytomo' -> 'scans'), or volume files "
                  "(TIFF stacks, .npy, HDF5)")
        try:
            zarr.open_array(str(path), mode="r")
        except Exception:
            raise FlytomoError(path, f"is not a zarr store ({type(err).__name__}); {wanted}") from None
        raise FlytomoError(path, f"is a bare zarr array, not an experiment store; {wanted}") from None


def _open_array(path: Path):
    grp = _open_group(path)
    try:
        return grp["0"]
    except KeyError:
        raise FlytomoError(path, "has no array '0' (the reconstructed volumes); "
                           "is this a flytomo experiment store?") from None


def open_store(path: str | Path) -> StoreInfo:
    """Open and check an experiment store; every problem is a one-line :class:`FlytomoError`.

    Checks: the path exists and is a zarr group; array ``0`` is (t, z, y, x) or (z, y, x)
    and not empty; the root attribute ``flytomo.scans`` has one scan per time point. A scan
    without a time (``start_time_s`` or ``mid_time_s``; files of some tools record none) is
    kept: the table leaves its times empty and the plots use the scan order.
    """
    path = Path(path)
    if not path.exists():
        raise FlytomoError(path, "no such experiment store")
    refuse_partial(path)
    grp = _open_group(path)
    arr = _open_array(path)
    shape = tuple(int(s) for s in arr.shape)
    if len(shape) not in (3, 4):
        raise FlytomoError(path, f"array '0' has shape {shape}; expected (t, z, y, x) or (z, y, x)")
    if any(s == 0 for s in shape):
        raise FlytomoError(path, f"the store is empty: array '0' has shape {shape}")
    attrs = dict(grp.attrs.get("flytomo") or {})
    scans = attrs.get("scans")
    if not isinstance(scans, list) or not scans:
        raise FlytomoError(path, "has no scan list (root attribute 'flytomo' -> 'scans'), "
                           "so the volumes have no times; was it written by flytomo?")
    nt = shape[0] if len(shape) == 4 else 1
    if len(shape) == 4 and len(scans) < nt:  # the array grown, its scan list not yet (a blind probe's full disk)
        warnings.warn(f"{path}: array '0' holds {nt} time points but 'flytomo' -> 'scans' lists {len(scans)}: an "
                      f"append stopped half-way (a full disk?); the {len(scans)} listed are analysed, and 'flytomo "
                      "run' of its config finishes the append", stacklevel=2)
        nt, shape = len(scans), (len(scans), *shape[1:])
    if len(scans) != nt:
        raise FlytomoError(path, f"lists {len(scans)} scans in 'flytomo' -> 'scans' but array '0' "
                           f"holds {nt} time points")
    if all("index" in s for s in scans):
        scans = sorted(scans, key=lambda s: int(s["index"]))
        if [int(s["index"]) for s in scans] != list(range(nt)):
            raise FlytomoError(path, "scan indices in 'flytomo' -> 'scans' are not 0.."
                               f"{nt - 1}")
    out = []
    for i, s in enumerate(scans):
        s = dict(s)
        s.setdefault("index", i)
        out.append(s)
    return StoreInfo(path=path, shape=shape, scans=out, attrs=attrs)
