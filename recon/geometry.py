"""Scan geometry shared by every slice of a parallel-beam fly-scan.

Conventions (DESIGN.md): angles are radians inside the code, degrees in files; a recorded
angle is the middle of its exposure, the blur spans θ ± Δθ/2; ``center`` is the detector
column (0-based, pixel i centred at i) onto which the rotation axis projects.

Orientation (the same as astra-toolbox's 2D ``parallel`` geometry, so sinograms compare
one to one): an image pixel (row r, column c) of an n×n slice sits at
x = c − (n−1)/2, y = (n−1)/2 − r and projects at angle θ onto the detector column
u = center + x·cos θ + y·sin θ.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from recon.errors import FlytomoError


#: what a scan's ``center`` may be besides a detector column (see recon.io.scan_geometry)
CENTER_CHOICES = ("auto", "middle")
#: the most a sample turns during one exposure (degrees) that flytomo takes as a blur angle
MAX_BLUR_ANGLE_DEG = 30.0


def default_blur_angle(angles: np.ndarray) -> float:
    """Median step between sorted recorded angles (radians): a dead-time-free continuous scan."""
    a = np.sort(np.asarray(angles, dtype=np.float64))
    if a.size < 2:
        return 0.0
    return float(np.median(np.diff(a)))


#: degrees: the smallest gap in a half turn's angles that counts as a wedge the scan did not see
MIN_WEDGE_DEG = 5.0


def folded_gaps(angles: np.ndarray, period: float = math.pi) -> tuple[np.ndarray, np.ndarray]:
    """Angles folded onto [0, period), by default the half turn (radians) where θ and θ + π see
    the same rays in parallel beam, and sorted: (order, gaps), order (n,) the indices in folded
    order and gaps (n,) from each folded angle to the next around the circle (the last to the
    first + period), in the angles' unit."""
    folded = np.mod(np.asarray(angles, dtype=np.float64).reshape(-1), period)
    order = np.argsort(folded, kind="stable")
    s = folded[order]
    return order, np.diff(np.append(s, s[0] + period))


@dataclass(frozen=True)
class ScanGeometry:
    """Parallel-beam fly-scan geometry of one scan (all rows share it).

    Attributes
    ----------
    angles : (n_angles,) float64, radians, exposure middles.
    n_columns : detector width in pixels.
    center : rotation-axis column on the detector (pixels, 0-based).
    blur_angle : angle turned during one exposure (radians), Δθ.
    image_size : reconstructed slices are image_size × image_size pixels.
    offsets : (n_angles,) float64 or None, pixels: where the sample sat along the detector,
        exposure by exposure, off the ideal rotation (a stage's jitter,
        :mod:`recon.io.alignment`); the projectors put point (x, y) at u + offsets[i].
    pad_columns : virtual detector columns added on each side for a sample wider than the
        field of view (:mod:`recon.truncation`): the reconstruction runs on :meth:`extended`
        and keeps the middle image_size × image_size; 0: none.
    """

    angles: np.ndarray
    n_columns: int
    center: float
    blur_angle: float
    image_size: int
    offsets: np.ndarray | None = None
    pad_columns: int = 0
    _key: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        angles = np.ascontiguousarray(self.angles, dtype=np.float64).reshape(-1)
        object.__setattr__(self, "angles", angles)
        if angles.size == 0:
            raise FlytomoError(None, "scan geometry needs at least one angle")
        if not np.all(np.isfinite(angles)):
            bad = np.flatnonzero(~np.isfinite(angles))
            raise FlytomoError(None, f"{bad.size} of the {angles.size} angles are not finite (NaN or inf; the first at "
                                     f"index {bad[0]}): give each projection its angle, or leave those projections out")
        if self.n_columns < 1 or self.image_size < 1:
            raise FlytomoError(None, "detector width and image size must be positive")
        if not np.isfinite(self.center):
            raise FlytomoError(None, f"the rotation-axis column must be a finite number, got {self.center}")
        if not (np.isfinite(self.blur_angle) and self.blur_angle >= 0):
            raise FlytomoError(None, f"the blur angle must be a finite angle ≥ 0, got {math.degrees(self.blur_angle):g}°")
        for name in ("n_columns", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value:
                raise FlytomoError(None, f"{name} must be a whole number of pixels, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not -0.5 <= self.center <= self.n_columns - 0.5:  # else every ray misses: an all-zero volume
            raise FlytomoError(None, f"center {self.center:g} is outside the detector's columns 0-{self.n_columns - 1}: "
                                     "the rotation axis must project onto the detector")
        if self.offsets is not None:
            offsets = np.ascontiguousarray(self.offsets, dtype=np.float64).reshape(-1)
            if offsets.shape != angles.shape or not np.all(np.isfinite(offsets)):
                raise FlytomoError(None, f"offsets must be {angles.size} finite numbers, one per angle")
            object.__setattr__(self, "offsets", None if not offsets.any() else offsets)
        if isinstance(self.pad_columns, bool) or int(self.pad_columns) != self.pad_columns or self.pad_columns < 0:
            raise FlytomoError(None, f"pad_columns must be a whole number ≥ 0, got {self.pad_columns!r}")
        object.__setattr__(self, "pad_columns", int(self.pad_columns))
        object.__setattr__(
            self,
            "_key",
            (angles.tobytes(), int(self.n_columns), float(self.center), float(self.blur_angle), int(self.image_size),
             b"" if self.offsets is None else self.offsets.tobytes(), self.pad_columns),
        )

    @classmethod
    def create(
        cls,
        angles_deg: np.ndarray,
        n_columns: int,
        *,
        center: float | None = None,
        blur_angle_deg: float | None = None,
        image_size: int | None = None,
        offsets: np.ndarray | None = None,
        pad_columns: int = 0,
    ) -> "ScanGeometry":
        """Build from file units: angles and blur in degrees, offsets in pixels; defaults per DESIGN.md."""
        angles = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
        if angles.size > 8 and 0 < np.ptp(angles_deg) <= 2 * np.pi + 1e-6:
            warnings.warn(f"the {angles.size} angles span {np.ptp(angles_deg):.4g}: taken as degrees, as create() "
                          "expects (np.rad2deg them if they are radians)", UserWarning, stacklevel=2)
        blur = default_blur_angle(angles) if blur_angle_deg is None else float(np.deg2rad(blur_angle_deg))
        if isinstance(center, str):  # the commands' words, not a column (a probe: "could not convert string")
            raise ValueError(f"center must be a detector column here, got {center!r}: find a scan's axis with "
                             "recon.io.center.find_center(sinograms, angles_deg), or leave it None for (n - 1)/2")
        return cls(
            angles=angles,
            n_columns=n_columns,
            center=(n_columns - 1) / 2.0 if center is None else float(center),
            blur_angle=blur,
            image_size=int(n_columns if image_size is None else image_size),
            offsets=offsets,
            pad_columns=pad_columns,
        )

    @property
    def n_angles(self) -> int:
        return int(self.angles.size)

    @property
    def angles_deg(self) -> np.ndarray:
        return np.rad2deg(self.angles)

    @property
    def blur_angle_deg(self) -> float:
        return float(np.rad2deg(self.blur_angle))

    @property
    def folded_step(self) -> float:
        """The typical gap (radians) between the angles folded onto [0, π) (:func:`folded_gaps`):
        the median of the gaps between distinct folded angles (a full turn's pairs θ, θ + π
        count once); π with one angle only."""
        _, gaps = folded_gaps(self.angles)
        return float(np.median(gaps[gaps > 1e-9]))

    @property
    def missing_wedge(self) -> float:
        """Radians of the half turn parallel beam needs that no projection comes near: the
        widest gap between the folded angles less :attr:`folded_step`; 0 for an even half or
        full turn, 60° for a scan of 0–120°."""
        _, gaps = folded_gaps(self.angles)
        return max(0.0, float(gaps.max()) - self.folded_step)

    @property
    def wedge_unseen(self) -> bool:
        """Whether the angles leave a wedge of the half turn unseen: :attr:`missing_wedge` of at
        least :data:`MIN_WEDGE_DEG` and at least 3 folded steps (:attr:`folded_step`)."""
        wedge = self.missing_wedge
        return wedge >= max(math.radians(MIN_WEDGE_DEG), 3.0 * self.folded_step)

    def key(self) -> tuple:
        """Hashable identity, for operator caches."""
        return self._key

    def with_blur(self, blur_angle: float) -> "ScanGeometry":
        """Same geometry with another blur angle (radians)."""
        return replace(self, blur_angle=float(blur_angle))

    def with_pad(self, pad_columns: int) -> "ScanGeometry":
        """Same geometry with ``pad_columns`` virtual columns per side."""
        return replace(self, pad_columns=pad_columns)

    def extended(self) -> "ScanGeometry":
        """The geometry the reconstruction runs on: the detector pad_columns wider on each side
        (the axis pad_columns further from column 0) and the image :attr:`margin` wider on
        each side, so that it reaches both padded edges however far the axis is off the
        detector's middle; no pad of its own."""
        p, m = self.pad_columns, self.margin
        return replace(self, n_columns=self.n_columns + 2 * p, center=self.center + p,
                       image_size=self.image_size + 2 * m, pad_columns=0)

    @property
    def margin(self) -> int:
        """Pixels the :meth:`extended` image adds on each side (0 without a pad)."""
        if not self.pad_columns:
            return 0
        reach = max(self.center, self.n_columns - 1 - self.center) + self.pad_columns
        return max(0, math.ceil(reach - (self.image_size - 1) / 2 - 1e-9))

    @property
    def ray_offsets(self) -> np.ndarray:
        """(n_angles,) the offsets, zeros where there are none."""
        return np.zeros(self.n_angles) if self.offsets is None else self.offsets

    def to_dict(self) -> dict:
        """JSON-friendly description (degrees), for provenance."""
        return {
            "angles_deg": [float(a) for a in self.angles_deg],
            "n_columns": self.n_columns,
            "center": self.center,
            "blur_angle_deg": self.blur_angle_deg,
            "image_size": self.image_size,
            "angle_reference": "exposure middle",
            **({} if self.offsets is None else {"offsets": [float(v) for v in self.offsets]}),
            **({} if not self.pad_columns else {"pad_columns": self.pad_columns}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ScanGeometry":
        return cls.create(
            np.asarray(d["angles_deg"]), int(d["n_columns"]), center=float(d["center"]),
            blur_angle_deg=float(d["blur_angle_deg"]), image_size=int(d["image_size"]),
            offsets=None if d.get("offsets") is None else np.asarray(d["offsets"], dtype=np.float64),
            pad_columns=int(d.get("pad_columns", 0)),
        )
