"""The reader interface and the one HDF5 reader all formats share.

A format module (fxi, dxchange, nxtomo) only works out *where* a file keeps its frames:
a :class:`Stack` each for projections, flats and darks. :class:`HDF5Scan` checks that the
stacks agree and reads rows z0:z1 of them with hyperslabs, opening the file for each read
(readers are small and picklable, so they travel to worker processes).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from recon.errors import FlytomoError
from recon.io._h5 import check_readable, dataset, open_h5, read_rows
from recon.io.metadata import assume


@dataclass(frozen=True, eq=False)
class RawChunk:
    """Counts of rows z0:z1 of one scan, float32.

    tomo : (angle, z, col) projections.  flats : (k, z, col) open beam.  darks : (k, z, col).
    source : the scan file (for messages).  z0 : first row of the chunk in the scan.
    """

    tomo: np.ndarray
    flats: np.ndarray
    darks: np.ndarray
    source: str | None = None
    z0: int = 0

    @property
    def rows(self) -> tuple[int, int]:
        """(z0, z1) of the chunk in the scan."""
        return self.z0, self.z0 + int(self.tomo.shape[1])


@runtime_checkable
class ScanReader(Protocol):
    """A tomography scan on disk. ``shape`` = (n_angles, n_rows, n_columns);
    ``angles_deg`` (n_angles,) float64, exposure middles; ``metadata`` with keys
    scan_id, scan_time (s, scan start), duration_s (s, where the file says: :func:`recon.io.metadata.scan_duration_s`),
    energy_keV, pixel_size_nm (None when unknown) and blur_angle_deg (only when the file records it)."""

    path: Path
    format: str
    shape: tuple[int, int, int]
    angles_deg: np.ndarray
    metadata: dict[str, Any]

    def read(self, z0: int, z1: int) -> RawChunk:
        """Rows z0:z1 (0 ≤ z0 < z1 ≤ n_rows) of projections, flats and darks."""
        ...


@dataclass(frozen=True, eq=False)
class Stack:
    """Where frames live: an HDF5 dataset (frame, row, col) or (row, col), and which frames.

    frames : sorted frame indices to use, or None for all frames of the dataset.
    name None : the file has no such frames; one frame of ``fill`` stands in (dark 0, flat 1).
    line_integrals : the dataset holds −log(transmission); reads return exp(−value).
    """

    name: str | None
    frames: np.ndarray | None = None
    what: str = ""
    fill: float = 0.0
    line_integrals: bool = False

    def count(self, shape: tuple[int, ...]) -> int:
        if len(shape) == 2:
            return 1
        return shape[0] if self.frames is None else int(self.frames.size)

    def read(self, f: Any, z0: int, z1: int, n_cols: int, path: Path) -> np.ndarray:
        """Rows z0:z1 of the frames, (k, z1 − z0, col) float32 (counts or transmissions)."""
        if self.name is None:
            return np.full((1, z1 - z0, n_cols), self.fill, np.float32)
        part = read_rows(dataset(f, self.name, path, self.what), self.frames, z0, z1, path)
        return np.exp(-part) if self.line_integrals else part


@dataclass
class HDF5Scan:
    """A scan in one HDF5 file (any of the supported formats); see :class:`ScanReader`."""

    path: Path
    format: str
    tomo: Stack
    flats: Stack
    darks: Stack
    angles_deg: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, int, int] = (0, 0, 0)

    @classmethod
    def checked(cls, path: str | os.PathLike, format: str, f: Any, tomo: Stack, flats: Stack,
                darks: Stack, angles_deg: np.ndarray, metadata: dict[str, Any]) -> "HDF5Scan":
        """Build after checking, in the open file ``f``, that the stacks and angles agree.

        A stack without a name is absent from the file (its ``what`` says which datasets are
        missing). No darks: a dark level of 0, with a warning. No flats: the projections must
        be float transmissions or line integrals (see :func:`normalized`).
        """
        path = Path(path)
        ts = dataset(f, tomo.name, path, tomo.what)
        if ts.ndim != 3:
            raise FlytomoError(path, f"dataset '{tomo.name}' should be (angle, row, col), has shape {ts.shape}")
        frame = tuple(int(s) for s in ts.shape[1:])
        n_angles = tomo.count(ts.shape)
        if n_angles == 0 or 0 in frame:
            raise FlytomoError(path, f"dataset '{tomo.name}' holds no projections (shape {ts.shape})")
        check_readable(ts, path)
        n_given = np.size(angles_deg)
        if n_given != n_angles and n_given in (ts.shape[1], ts.shape[2]):
            axis = "(row, angle, col)" if n_given == ts.shape[1] else "(row, col, angle)"
            raise FlytomoError(path, f"dataset '{tomo.name}' has shape {ts.shape} for {n_given} angles: stored as "
                                     f"{axis}? flytomo reads (angle, row, col) (transpose it, e.g. numpy.moveaxis)")
        if flats.name is None:
            tomo, flats, darks = normalized(ts, tomo, path, flats.what), Stack(None, fill=1.0), Stack(None)
        elif darks.name is None:
            assume(path, f"no dark fields ({darks.what}): dark level taken as 0")
        for stack, kind in ((flats, "flat"), (darks, "dark")):
            if stack.name is None:
                continue
            ds = dataset(f, stack.name, path, stack.what)
            if ds.ndim not in (2, 3) or tuple(ds.shape[-2:]) != frame:
                raise FlytomoError(path, f"{kind} frames '{stack.name}' have shape {ds.shape}, projections are {frame} (row, col)")
            if stack.count(ds.shape) == 0:
                raise FlytomoError(path, f"no {kind} frames in '{stack.name}'")
            check_readable(ds, path)
        angles = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
        if angles.size != n_angles:
            raise FlytomoError(path, f"{angles.size} angles for {n_angles} projections")
        if not np.all(np.isfinite(angles)):
            raise FlytomoError(path, f"{int(np.sum(~np.isfinite(angles)))} of the angles are NaN or infinite")
        if np.unique(angles).size < 2:
            raise FlytomoError(path, f"all {n_angles} projection(s) are at {angles[0]:g}°: a tomogram needs "
                                     "projections at several angles (is the angle dataset a placeholder?)")
        return cls(path, format, tomo, flats, darks, angles, dict(metadata), (n_angles, *frame))

    def read(self, z0: int, z1: int, projections: np.ndarray | None = None) -> RawChunk:
        """Rows z0:z1 of projections (angle, z, col), flats and darks (k, z, col), float32;
        ``projections``: only these (indices into the scan's angles, sorted), e.g. the last one."""
        n_rows = self.shape[1]
        if not (isinstance(z0, (int, np.integer)) and isinstance(z1, (int, np.integer))) or not 0 <= z0 < z1 <= n_rows:
            raise FlytomoError(self.path, f"rows {z0}:{z1} are outside the scan (valid rows are 0:{n_rows}, z0 < z1)")
        z0, z1 = int(z0), int(z1)
        tomo = self.tomo
        if projections is not None:
            every = np.arange(self.shape[0]) if tomo.frames is None else tomo.frames
            tomo = replace(tomo, frames=every[np.asarray(projections, dtype=int)])
        with open_h5(self.path) as f:
            parts = [s.read(f, z0, z1, self.shape[2], self.path) for s in (tomo, self.flats, self.darks)]
        return RawChunk(*parts, source=str(self.path), z0=z0)

    def __enter__(self) -> "HDF5Scan":
        return self

    def __exit__(self, *exc: object) -> None:  # nothing held open between reads
        return None


def normalized(ds: Any, tomo: Stack, path: Path, why: str) -> Stack:
    """The projections of a file without flat fields, taken as already-normalised data.

    Judged on the first, middle and last projection: float transmissions lie in [−0.1, 2]
    with the outermost columns (outside the sample) ≈ 1; float line integrals are ≥ −0.1
    with those columns ≈ 0. Either is accepted with a warning; anything else (counts
    without flats) is a FlytomoError. ``why`` says which flat-field datasets are missing.
    """
    missing = f"no flat fields ({why})"
    if not np.issubdtype(ds.dtype, np.floating):
        raise FlytomoError(path, f"{missing}, and the projections '{tomo.name}' are {ds.dtype} counts: "
                                 "cannot normalise them")
    n = tomo.count(ds.shape)
    picks = np.unique([0, n // 2, n - 1])
    frames = picks if tomo.frames is None else tomo.frames[picks]
    sample = np.concatenate([read_rows(ds, np.array([i]), 0, ds.shape[1], path) for i in frames])
    edges = np.concatenate([sample[..., :2], sample[..., -2:]], axis=-1)
    sample, edges = sample[np.isfinite(sample)], edges[np.isfinite(edges)]
    if edges.size == 0:
        raise FlytomoError(path, f"{missing}, and the projections sampled are all NaN or infinite")
    lo, hi, edge = float(sample.min()), float(sample.max()), float(np.median(edges))
    values = f"values {lo:.3g} to {hi:.3g}, {edge:.3g} at the detector edges"
    if lo >= -0.1 and hi <= 2.0 and 0.7 <= edge <= 1.3:
        assume(path, f"{missing}: taken as transmissions ({values})")
        return tomo
    if lo >= -0.1 and abs(edge) <= 0.2:
        assume(path, f"{missing}: taken as line integrals ({values})")
        return Stack(tomo.name, tomo.frames, tomo.what, line_integrals=True)
    raise FlytomoError(path, f"{missing}, and the float projections ({values}) are neither transmissions "
                             "(≈1 outside the sample) nor line integrals (≈0): cannot normalise them")


def scan_arrays(path: Path, tomo: Any, flats: Any, darks: Any, angles_deg: Any
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float | None]:
    """Arrays for a writer: either given one by one, or ``tomo`` is a scan object (such as
    ``recon.simulate.SimulatedScan``) with ``tomo, flats, darks, angles_deg`` (and optionally
    ``blur_angle_deg``). Returns (tomo, flats, darks, angles_deg, blur_angle_deg or None);
    flats/darks given as (row, col) become (1, row, col). Shapes are checked."""
    blur = None
    if not isinstance(tomo, np.ndarray) and hasattr(tomo, "tomo"):
        scan = tomo
        tomo = scan.tomo
        flats = scan.flats if flats is None else flats
        darks = scan.darks if darks is None else darks
        angles_deg = scan.angles_deg if angles_deg is None else angles_deg
        blur = getattr(scan, "blur_angle_deg", None)
    if flats is None or darks is None or angles_deg is None:
        raise FlytomoError(path, "writing a scan needs projections, flats, darks and angles")
    tomo, flats, darks = (np.asarray(a) for a in (tomo, flats, darks))
    flats, darks = (a[None] if a.ndim == 2 else a for a in (flats, darks))
    angles = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    if tomo.ndim != 3:
        raise FlytomoError(path, f"projections must be (angle, row, col), got shape {tomo.shape}")
    for a, kind in ((flats, "flats"), (darks, "darks")):
        if a.ndim != 3 or a.shape[1:] != tomo.shape[1:] or a.shape[0] == 0:
            raise FlytomoError(path, f"{kind} of shape {a.shape} do not match projections {tomo.shape}")
    if angles.size != tomo.shape[0]:
        raise FlytomoError(path, f"{angles.size} angles for {tomo.shape[0]} projections")
    return tomo, flats, darks, angles, None if blur is None else float(blur)
