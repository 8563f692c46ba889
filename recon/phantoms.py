"""Synthetic phantoms: the seed paper's four training families, test images, grid lines,
and the particle of the synthetic heating experiment.

Every phantom is attenuation per pixel (DESIGN.md: a ray's line integral is the sum of the
pixels it crosses, pixel length 1), float32, non-negative, and zero outside the
reconstruction disk of radius ``DISK_FRACTION · n / 2`` about the centre ``(n − 1)/2``
(for a volume: outside that cylinder about the z axis, the rotation axis). Images are
(n, n) = [y, x]; volumes are (n, n, n) = [z, y, x]. Rays run inside one z slice.

Unless told otherwise a phantom is scaled so that its densest ray — the largest line
integral over all angles and all slices, estimated by :func:`densest_ray` — is
``max_line_integral`` (2.0 by default: transmission e⁻² ≈ 14 % at the darkest detector
pixel, the seed's regime).

Seeds: each phantom is a pure function of (family, size, seed, ndim); randomness comes
from ``np.random.default_rng`` seeded with ``[seed, family index, ndim]``. Seed ranges keep
the splits apart: training uses seeds ``TRAIN_SEED0 + i``, validation
``VALIDATION_SEED0 + i``, test ``TEST_SEED0 + i``, for ``0 ≤ i < SEED_BLOCK`` (see
:func:`split_seed`).

Families (:data:`FAMILIES`), features from the sample's scale down to 1 px:

- ``"heterogeneous"``: overlapping blobs/ellipses (ellipsoids) of various densities and
  sizes, sharp and smooth edges, smooth texture, small bright inclusions and voids (some
  a single pixel).
- ``"cracked"``: several round/ellipsoidal particles of various sizes with random curvy
  cracks (lines in 2D, sheets in 3D) of low density, 1–4 px wide, tapered at their tips.
- ``"network"``: a connected web of curvy cell walls (a warped Voronoi foam, walls 1–4 px
  thick, some cells partly filled) cut by random cracks.
- ``"radial"``: particles with radial cracks running from near the centre outwards
  (opening towards the surface, like a cracked secondary cathode particle), pores, and
  sometimes a hollow core.

One more family for training only (:data:`EXTRA_FAMILIES`, never in :func:`test_images`):

- ``"leaves"``: a dead-leaves image (occluding ellipses, sizes from a power law, 1.5 px to a
  quarter of the field; grey levels uniform, some empty) inside an irregular outline, with
  a fine texture: the scale-invariant statistics of natural images, so that a network
  trained on it keeps structures no family above draws (Achddou et al., "Synthetic images
  as a regularity prior for image restoration neural networks", SSVM 2021).
- ``"grains"``: polycrystalline secondary particles, as a layered-oxide cathode particle is
  built: primary grains 8–32 px across (fewer px below 256² images) (a warped Voronoi tessellation) with their own
  density (±2–20 %), faint closed boundaries, a share of boundaries opened into 1–3 px
  intergranular cracks (more towards the particle's core, where real particles crack
  first), pores and a grainy texture of up to ±20 %.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from recon.errors import FlytomoError

__all__ = [
    "FAMILIES",
    "EXTRA_FAMILIES",
    "ALL_FAMILIES",
    "DISK_FRACTION",
    "TRAIN_SEED0",
    "VALIDATION_SEED0",
    "TEST_SEED0",
    "SEED_BLOCK",
    "split_seed",
    "make_phantom",
    "grid_lines",
    "test_images",
    "densest_ray",
    "support_mask",
    "particle_mask",
    "heating_particle",
]

#: the seed paper's four training families, in a fixed order
FAMILIES: tuple[str, ...] = ("heterogeneous", "cracked", "network", "radial")
#: families for training only (not the seed's; never test images)
EXTRA_FAMILIES: tuple[str, ...] = ("leaves", "grains")
#: every family make_phantom draws
ALL_FAMILIES = FAMILIES + EXTRA_FAMILIES

#: phantoms are zero outside radius DISK_FRACTION · n/2 about the centre (n − 1)/2
DISK_FRACTION = 0.95

#: first seed of each split; a split owns seeds [SEED0, SEED0 + SEED_BLOCK)
TRAIN_SEED0 = 0
VALIDATION_SEED0 = 1_000_000
TEST_SEED0 = 2_000_000
SEED_BLOCK = 1_000_000
_SPLITS = {"train": TRAIN_SEED0, "validation": VALIDATION_SEED0, "test": TEST_SEED0}

_MIN_SIZE = 16
_HEATING_KEY = 1_234_567  # keeps the heating particle's random stream apart from the families'

Coords = list  # list of ndim float32 arrays, broadcastable to a box (relative coordinates, px)


# ───────────────────────────── seeds and checks ─────────────────────────────


def split_seed(split: str, index: int) -> int:
    """The phantom seed of image ``index`` of a split.

    Parameters
    ----------
    split : ``"train"``, ``"validation"`` or ``"test"``.
    index : 0 ≤ index < SEED_BLOCK.

    Returns
    -------
    int : ``SEED0 + index`` of that split (TRAIN_SEED0, VALIDATION_SEED0 or TEST_SEED0).
    """
    if split not in _SPLITS:
        raise FlytomoError(None, f"unknown seed split {split!r}; choose one of train, validation, test")
    index = _check_int("phantom index", index, 0)
    if index >= SEED_BLOCK:
        raise FlytomoError(None, f"phantom index {index} is outside its split (must be < {SEED_BLOCK})")
    return _SPLITS[split] + index


def _check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int ≥ minimum (integral floats accepted), or a FlytomoError."""
    try:
        as_float = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FlytomoError(None, f"{name} must be an integer, got {value!r}") from None
    if not math.isfinite(as_float) or as_float != int(as_float):
        raise FlytomoError(None, f"{name} must be an integer, got {value!r}")
    if int(as_float) < minimum:
        raise FlytomoError(None, f"{name} must be at least {minimum}, got {value!r}")
    return int(as_float)


def _check_positive(name: str, value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FlytomoError(None, f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise FlytomoError(None, f"{name} must be a positive finite number, got {value!r}")
    return v


def _check_ndim(ndim: object) -> int:
    if ndim not in (2, 3):
        raise FlytomoError(None, f"phantom ndim must be 2 (image) or 3 (volume), got {ndim!r}")
    return int(ndim)  # type: ignore[arg-type]


# ───────────────────────────── geometry helpers ─────────────────────────────


def support_mask(size: int, ndim: int = 2) -> np.ndarray:
    """The reconstruction disk (2D) or cylinder about the z axis (3D).

    Returns
    -------
    bool array, (n, n) for ndim=2 or (1, n, n) for ndim=3 (broadcasts over z): True where
    the pixel centre lies within ``DISK_FRACTION · n/2`` px of the centre ``(n − 1)/2``.
    """
    n = _check_int("phantom size", size, 1)
    ndim = _check_ndim(ndim)
    c = (n - 1) / 2.0
    r = np.arange(n, dtype=np.float64) - c
    disk = r[:, None] ** 2 + r[None, :] ** 2 <= (DISK_FRACTION * n / 2.0) ** 2
    return disk if ndim == 2 else disk[None]


def _ray_grid(n: int, phi: float, s: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    """Sample points (row, column) of rays in direction ``phi`` (radians; unit step
    (sin φ, cos φ) in (row, column)) at signed offsets ``s`` (px) from the centre, sampled
    at ``t`` (px along the ray): two (len(s), len(t)) arrays."""
    c = (n - 1) / 2.0
    sp, cp = math.sin(phi), math.cos(phi)
    rows = c + s[:, None] * cp + t[None, :] * sp
    cols = c - s[:, None] * sp + t[None, :] * cp
    return [rows, cols]


def _sample(a: np.ndarray, grid: list[np.ndarray]) -> np.ndarray:
    """Bilinear samples of every slice of ``a`` (k, n, n) at ``grid``: (k, *grid shape)."""
    return np.stack([ndi.map_coordinates(sl, grid, order=1, mode="constant", cval=0.0, prefilter=False) for sl in a])


def densest_ray(obj: np.ndarray, n_angles: int = 24, refine: bool = True) -> float:
    """Largest line integral through an image or volume, over all directions in its planes.

    Rays lie in the (y, x) planes (parallel beam, rotation about z); a ray's integral is the
    sum of bilinear samples spaced 1 px along it. A coarse sweep over ``n_angles``
    directions k·180°/n_angles (all offsets, 1 px apart) is followed, when ``refine``, by a
    hill-climb to ±0.5° around the four best directions, on the slices and detector offsets
    that hold their densest rays: long straight features (walls, lines) give peaks in angle
    narrower than the coarse step.

    Parameters
    ----------
    obj : (n, n) image or (z, n, n) volume, attenuation per pixel.
    n_angles : directions of the coarse sweep in [0°, 180°); rounded up to an even number.
    refine : refine around the best coarse directions (default True).

    Returns
    -------
    float : the largest ray sum found (dimensionless line integral).
    """
    a = np.asarray(obj, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise FlytomoError(None, f"densest_ray needs an (n, n) image or (z, n, n) volume, got shape {a.shape}")
    n = a.shape[1]
    half = max(1, (int(n_angles) + 1) // 2)
    step = math.pi / (2 * half)
    full = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    # coarse: one sampled grid per angle gives the directions φ (sum along t) and φ + 90° (along s)
    peak = np.empty((half, 2, a.shape[0]))
    where = np.empty((half, 2, a.shape[0]), dtype=np.int64)
    for k in range(half):
        v = _sample(a, _ray_grid(n, k * step, full, full))
        for axis, sums in enumerate((v.sum(axis=2), v.sum(axis=1))):
            peak[k, axis] = sums.max(axis=1)
            where[k, axis] = sums.argmax(axis=1)
    best = float(peak.max())
    if not refine or best <= 0:
        return best
    band_half = int(math.ceil(n / 2.0 * step)) + 2  # how far a peak's offset can move over ±step
    band = np.arange(-band_half, band_half + 1, dtype=np.float64)
    for flat in np.argsort(peak.max(axis=2).ravel())[::-1][:4]:
        k, axis = divmod(int(flat), 2)
        prof = peak[k, axis]
        slices = np.argsort(prof)[::-1][:8]
        slices = np.sort(slices[prof[slices] >= 0.8 * prof.max()])
        z0 = int(np.argmax(prof))
        s0 = full[where[k, axis, z0]]
        # summing the grid of angle φ along s gave the rays of direction φ + 90° at offsets −t
        phi = k * step + (math.pi / 2 if axis else 0.0)
        s0 = -s0 if axis else s0
        sub = a[slices]
        value, h = float(prof.max()), step / 2.0
        while h >= math.radians(0.45):
            for p in (phi - h, phi + h):
                v = float(_sample(sub, _ray_grid(n, p, s0 + band, full)).sum(axis=2).max())
                if v > value:
                    phi, value = p, v
            h /= 2.0
        best = max(best, value)
    return best


def _scale_to(obj: np.ndarray, max_line_integral: float, n_angles: int = 24) -> np.ndarray:
    """``obj`` scaled in place so that its densest ray is ``max_line_integral``."""
    d = densest_ray(obj, n_angles)
    if d <= 0:  # cannot happen for the generators below; a guard, not a code path
        raise FlytomoError(None, "phantom came out empty; try another seed")
    obj *= np.float32(max_line_integral / d)
    return obj


def _box(n: int, center: Sequence[float], radius: float) -> tuple[tuple[slice, ...], Coords] | None:
    """Slices of the cube ``center ± radius`` clipped to the array, and open-grid coordinates
    (float32, px, relative to ``center``) broadcasting to that box; None when empty."""
    nd = len(center)
    slices, coords = [], []
    for ax, ci in enumerate(center):
        lo = max(0, int(math.floor(ci - radius)))
        hi = min(n, int(math.ceil(ci + radius)) + 1)
        if lo >= hi:
            return None
        shape = [1] * nd
        shape[ax] = hi - lo
        slices.append(slice(lo, hi))
        coords.append((np.arange(lo, hi, dtype=np.float32) - np.float32(ci)).reshape(shape))
    return tuple(slices), coords


def _dot(vec: np.ndarray, x: Coords) -> np.ndarray:
    """Σ_i vec_i · x_i, broadcast to the box (float32)."""
    out = np.float32(vec[0]) * x[0]
    for i in range(1, len(x)):
        out = out + np.float32(vec[i]) * x[i]
    return np.broadcast_to(out, np.broadcast_shapes(*(xi.shape for xi in x)))


def _random_rotation(rng: np.random.Generator, nd: int) -> np.ndarray:
    """A uniformly random rotation matrix (nd, nd); columns are the principal directions."""
    q, r = np.linalg.qr(rng.standard_normal((nd, nd)))
    q = q * np.sign(np.diag(r))[None, :]
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _in_plane_rotation(rng: np.random.Generator, nd: int) -> np.ndarray:
    """Rotation about the z axis only (3D) or any rotation (2D): keeps a body inside the cylinder."""
    if nd == 2:
        return _random_rotation(rng, 2)
    q = np.eye(3)
    q[1:, 1:] = _random_rotation(rng, 2)
    return q


def _unit(rng: np.random.Generator, nd: int) -> np.ndarray:
    v = rng.standard_normal(nd)
    return v / np.linalg.norm(v)


def _perpendicular(rng: np.random.Generator, normal: np.ndarray) -> np.ndarray:
    """A random unit vector perpendicular to ``normal``."""
    if normal.size == 2:
        return np.array([-normal[1], normal[0]])
    v = rng.standard_normal(3)
    v -= v.dot(normal) * normal
    return v / np.linalg.norm(v)


def _random_point(rng: np.random.Generator, n: int, nd: int, rmax: float, zmargin: float = 0.0) -> np.ndarray:
    """A point (px, array index order) uniform in the disk of radius ``rmax`` about the
    centre; in 3D, z uniform in [zmargin, n − 1 − zmargin]."""
    c = (n - 1) / 2.0
    r = max(rmax, 0.0) * math.sqrt(rng.random())
    t = rng.uniform(0, 2 * math.pi)
    yx = [c + r * math.sin(t), c + r * math.cos(t)]
    if nd == 2:
        return np.array(yx)
    lo, hi = zmargin, n - 1 - zmargin
    z = rng.uniform(lo, hi) if hi > lo else c
    return np.array([z, *yx])


def _noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth Gaussian random field (float32, zero mean, unit std), correlation length
    ``sigma`` px, made by filtering white noise in Fourier space (periodic)."""
    w = rng.standard_normal(shape, dtype=np.float32)
    axes = tuple(range(len(shape)))
    f = np.fft.rfftn(w, axes=axes)
    g = None
    for ax, m in enumerate(shape):
        fr = np.fft.rfftfreq(m) if ax == len(shape) - 1 else np.fft.fftfreq(m)
        ga = np.exp(-2.0 * (math.pi * sigma * fr) ** 2).astype(np.float32)
        sh = [1] * len(shape)
        sh[ax] = ga.size
        ga = ga.reshape(sh)
        g = ga if g is None else g * ga
    out = np.fft.irfftn(f * g, s=shape, axes=axes).astype(np.float32)
    out -= out.mean()
    sd = float(out.std())
    return out / sd if sd > 0 else out


def _texture(shape: tuple[int, ...], rng: np.random.Generator, amplitude: float, sigma: float) -> np.ndarray:
    """Multiplicative texture 1 + amplitude·noise, clipped to [0.5, 1.5] (float32)."""
    return np.clip(1.0 + amplitude * _noise(shape, sigma, rng), 0.5, 1.5).astype(np.float32)


# ───────────────────────────── primitives ─────────────────────────────


def _ellipsoid_q(x: Coords, axes: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Normalised radius q (q = 1 on the surface) of an ellipsoid with semi-axes ``axes``
    (px) along the columns of ``rot``, at relative coordinates ``x``."""
    q2 = None
    for k in range(len(x)):
        u = _dot(rot[:, k], x) * np.float32(1.0 / axes[k])
        q2 = u * u if q2 is None else q2 + u * u
    return np.sqrt(q2)


def _paint_ellipsoid(
    img: np.ndarray,
    center: Sequence[float],
    axes: np.ndarray,
    rot: np.ndarray,
    value: float,
    edge: float = 0.0,
    mode: str = "add",
) -> None:
    """Paint an ellipsoid into ``img`` (in place).

    ``edge`` ≤ 0: sharp (binary) boundary; otherwise a tanh profile of half-width ``edge``
    px. ``mode``: "add" (img += value·p), "set" (img ← img·(1 − p) + value·p), "max".
    """
    axes = np.asarray(axes, dtype=np.float64)
    scale = float(np.mean(axes))
    reach = float(axes.max()) * (1.0 + (3.0 * edge / scale if edge > 0 else 0.0)) + 1.0
    b = _box(img.shape[0], center, reach)
    if b is None:
        return
    sl, x = b
    q = _ellipsoid_q(x, axes, rot)
    if edge > 0:
        p = (0.5 * (1.0 - np.tanh(np.clip((q - 1.0) * np.float32(scale / edge), -4, 4)))).astype(np.float32)
    else:
        p = (q <= 1.0).astype(np.float32)
    view = img[sl]
    if mode == "add":
        view += np.float32(value) * p
    elif mode == "set":
        view *= 1.0 - p
        view += np.float32(value) * p
    elif mode == "max":
        np.maximum(view, np.float32(value) * p, out=view)
    else:  # pragma: no cover - internal misuse
        raise ValueError(mode)


def _waves(rng: np.random.Generator, normal: np.ndarray, extent: float, slope: float, n_waves: int = 3) -> list:
    """Height-field perturbation of a plane: waves (k ⊥ normal, amplitude, phase) whose
    slopes add up to ``slope``; wavelengths 0.6–2.5 × ``extent`` px."""
    if slope <= 0 or n_waves <= 0:
        return []
    parts = rng.uniform(0.2, 1.0, n_waves)
    parts *= slope / parts.sum()
    out = []
    for s in parts:
        k = _perpendicular(rng, normal) * (2 * math.pi / (max(extent, 2.0) * rng.uniform(0.6, 2.5)))
        amp = s / np.linalg.norm(k)
        out.append((k, amp, rng.uniform(0, 2 * math.pi)))
    return out


def _sheet_distance(x: Coords, normal: np.ndarray, waves: list) -> np.ndarray:
    """Signed distance (px, first order) to the curvy sheet n·x + Σ A sin(k·x + φ) = 0."""
    d = _dot(normal, x)
    if not waves:
        return d
    h = None
    g = [None] * len(x)
    for k, amp, ph in waves:
        arg = _dot(k, x) + np.float32(ph)
        h = np.float32(amp) * np.sin(arg) if h is None else h + np.float32(amp) * np.sin(arg)
        c = np.float32(amp) * np.cos(arg)
        for i in range(len(x)):
            g[i] = c * np.float32(k[i]) if g[i] is None else g[i] + c * np.float32(k[i])
    g2 = sum(gi * gi for gi in g)  # ∇h ⊥ normal, so |∇d|² = 1 + |∇h|²
    return (d + h) / np.sqrt(1.0 + g2)


def _near_plane(x: Coords, normal: np.ndarray, half: float) -> tuple[tuple[np.ndarray, ...], Coords]:
    """Indices (into the box) and 1-D coordinates of the voxels with |normal·x| ≤ half:
    the slab that can hold a sheet, so the rest of the box is never evaluated."""
    d0 = _dot(normal, x)
    idx = np.nonzero(np.abs(d0) <= half)
    return idx, [np.broadcast_to(xi, d0.shape)[idx] for xi in x]


def _slab_half(width: float, waves: list) -> float:
    """Half-thickness of a slab about the plane that contains every voxel with
    |sheet distance| ≤ width/2 (|∇h| ≤ Σ A|k|, |h| ≤ Σ A)."""
    amp = sum(abs(a) for _, a, _ in waves)
    slope = sum(abs(a) * float(np.linalg.norm(k)) for k, a, _ in waves)
    return amp + 0.5 * width * math.sqrt(1.0 + slope * slope) + 0.01


def _paint_crack(
    mask: np.ndarray,
    center: Sequence[float],
    normal: np.ndarray,
    extent: float,
    width: float,
    waves: list,
) -> None:
    """A curvy crack (2D: a line segment, 3D: a disc-shaped sheet) into ``mask`` (in place).

    The crack runs through ``center`` perpendicular to ``normal``, reaches ``extent`` px from
    it within its plane, and is ``width`` px wide at the middle tapering to 1 px at the tips:
    the voxels with |distance to the sheet| ≤ w/2.
    """
    nd = mask.ndim
    reach = extent + width + sum(abs(a) for _, a, _ in waves) + 2.0
    b = _box(mask.shape[0], center, reach)
    if b is None:
        return
    sl, x = b
    idx, x = _near_plane(x, normal, _slab_half(width, waves))
    d = _sheet_distance(x, normal, waves)
    if nd == 2:
        rho = np.abs(_dot(np.array([-normal[1], normal[0]]), x))
    else:
        d0 = _dot(normal, x)
        rho = np.sqrt(np.maximum(sum(xi * xi for xi in x) - d0 * d0, 0.0))
    taper = np.sqrt(np.clip(1.0 - (rho / np.float32(extent)) ** 2, 0.0, 1.0))
    w = 1.0 + np.float32(width - 1.0) * taper
    view = mask[sl]
    view[idx] |= (rho <= extent) & (np.abs(d) <= 0.5 * w)


def _paint_radial_crack(
    mask: np.ndarray,
    center: Sequence[float],
    normal: np.ndarray,
    direction: np.ndarray,
    r_in: float,
    r_out: float,
    r_ref: float,
    half_angle: float,
    w_out: float,
    tip: float,
    waves: list,
) -> None:
    """A radial crack from a particle centre outwards into ``mask`` (in place).

    2D: a curvy line along ``direction`` from r_in to r_out px. 3D: the sector
    |angle from ``direction``| ≤ ``half_angle`` (radians) of the curvy sheet through
    ``center`` with ``normal``, radii r_in ≤ ρ ≤ r_out. Width grows linearly from 1 px at
    r_in to ``w_out`` px at ``r_ref``, and narrows back to 1 px over the last ``tip`` px
    before r_out and towards the sector's edges. Every threshold grows with r_out, so a
    crack with a larger r_out contains the one with a smaller r_out (nested growth).
    """
    nd = mask.ndim
    if r_out <= r_in:
        return
    reach = r_out + w_out + sum(abs(a) for _, a, _ in waves) + 2.0
    b = _box(mask.shape[0], center, reach)
    if b is None:
        return
    sl, x = b
    idx, x = _near_plane(x, normal, _slab_half(max(w_out, 1.0), waves))
    d = _sheet_distance(x, normal, waves)
    a = _dot(direction, x)
    if nd == 2:
        rho = a
        ok = (rho >= r_in) & (rho <= r_out)
        edge = np.float32(1.0)
    else:
        bvec = _dot(np.cross(normal, direction), x)
        rho = np.sqrt(a * a + bvec * bvec)
        psi = np.abs(np.arctan2(bvec, a))
        ok = (rho >= r_in) & (rho <= r_out) & (psi <= half_angle)
        edge = np.sqrt(np.clip(1.0 - (psi / np.float32(half_angle)) ** 2, 0.0, 1.0))
    grow = np.clip((rho - np.float32(r_in)) / np.float32(max(r_ref - r_in, 1e-3)), 0.0, 1.0)
    tip_f = np.clip((np.float32(r_out) - rho) / np.float32(max(tip, 1e-3)), 0.0, 1.0)
    w = 1.0 + np.float32(w_out - 1.0) * grow * tip_f * edge
    view = mask[sl]
    view[idx] |= ok & (np.abs(d) <= 0.5 * w)


def _paint_pores(
    factor: np.ndarray,
    centers: np.ndarray,
    radii: np.ndarray,
) -> None:
    """Set ``factor`` to 0 inside round pores (in place); radius ≤ 0.5 px means the one
    voxel at the rounded centre."""
    n = factor.shape[0]
    for p, r in zip(centers, radii):
        if r <= 0.5:
            idx = tuple(int(np.clip(round(v), 0, n - 1)) for v in p)
            factor[idx] = 0.0
            continue
        b = _box(n, p, r + 1.0)
        if b is None:
            continue
        sl, x = b
        inside = sum(xi * xi for xi in x) <= np.float32(r * r)
        factor[sl][np.broadcast_to(inside, factor[sl].shape)] = 0.0


def _place(
    rng: np.random.Generator, n: int, nd: int, radii: Sequence[float], rmax: float, gap: float = 0.9, tries: int = 200
) -> list[tuple[np.ndarray, float]]:
    """Centres for round bodies of the given radii (largest first) inside the disk of
    radius ``rmax`` (and the z range), at least ``gap``·(r_i + r_j) apart; bodies that do
    not fit are dropped."""
    placed: list[tuple[np.ndarray, float]] = []
    for r in sorted(radii, reverse=True):
        for _ in range(tries):
            p = _random_point(rng, n, nd, rmax - r, zmargin=r + 1.0)
            if all(np.linalg.norm(p - q) >= gap * (r + rq) for q, rq in placed):
                placed.append((p, float(r)))
                break
    return placed


def _width(rng: np.random.Generator) -> int:
    """A crack width in px, 1–4, thin ones more likely."""
    return int(rng.choice([1, 1, 1, 2, 2, 3, 4]))


def _count(base: float, n: int, nd: int) -> int:
    """Number of px-sized features (inclusions, pores) at constant density: ``base`` for a
    64² image, scaled by area (2D) or by volume × 8 (3D), at most 5000."""
    scale = (n / 64.0) ** 2 if nd == 2 else 8.0 * (n / 64.0) ** 3
    return int(min(5000, round(base * scale)))


# ───────────────────────────── the four families ─────────────────────────────


def _heterogeneous(n: int, nd: int, rng: np.random.Generator) -> np.ndarray:
    shape = (n,) * nd
    img = np.zeros(shape, np.float32)
    c = (n - 1) / 2.0
    rd = DISK_FRACTION * n / 2.0
    # the sample body: a large ellipse / ellipsoid standing on the rotation axis
    axes = rd * rng.uniform(0.62, 0.9, nd)
    if nd == 3:
        axes[0] = n / 2.0 * rng.uniform(0.75, 0.95)
    center = np.full(nd, c) + np.r_[[0.0] * (nd - 2), rng.uniform(-0.04, 0.04, 2) * n]
    _paint_ellipsoid(img, center, axes, _in_plane_rotation(rng, nd), rng.uniform(0.25, 0.5),
                     edge=float(rng.choice([0.0, rng.uniform(0.5, 3.0)])), mode="add")
    # blobs from coarse to fine, added or replacing, sharp or smooth
    for _ in range(int(rng.integers(10, 26))):
        radius = math.exp(rng.uniform(math.log(0.02 * n + 1.0), math.log(0.25 * n)))
        ax = radius * rng.uniform(0.5, 1.5, nd)
        p = _random_point(rng, n, nd, 0.85 * rd, zmargin=0.05 * n)
        value = rng.uniform(0.2, 0.9) * (1.0 if rng.random() < 0.8 else -0.6)
        edge = 0.0 if rng.random() < 0.5 else rng.uniform(0.5, max(0.6, 0.3 * radius))
        mode = "add" if (value < 0 or rng.random() < 0.6) else "set"
        _paint_ellipsoid(img, p, ax, _random_rotation(rng, nd), value, edge, mode)
    np.maximum(img, 0.0, out=img)
    img *= _texture(shape, rng, rng.uniform(0.03, 0.12), rng.uniform(1.5, 6.0))
    # small inclusions: bright grains and voids, some a single pixel
    top = float(np.percentile(img[img > 0], 95)) if np.any(img > 0) else 1.0
    m = _count(rng.uniform(8, 20), n, nd)
    for _ in range(m):
        for _try in range(5):  # inclusions sit in material, not in the vacuum around it
            p = _random_point(rng, n, nd, 0.85 * rd, zmargin=0.05 * n)
            if img[tuple(int(round(v)) for v in p)] > 0:
                break
        bright = rng.random() < 0.6
        value = top * rng.uniform(1.3, 2.2) if bright else 0.0
        if rng.random() < 0.5:  # one pixel
            idx = tuple(int(round(v)) for v in p)
            img[idx] = value
        else:
            r = rng.uniform(1.0, 3.0)
            _paint_ellipsoid(img, p, np.full(nd, r), np.eye(nd), value, 0.0, "set")
    return img


def _cracked(n: int, nd: int, rng: np.random.Generator) -> np.ndarray:
    shape = (n,) * nd
    img = np.zeros(shape, np.float32)
    rd = DISK_FRACTION * n / 2.0
    k = int(rng.integers(3, 10))
    radii = np.exp(rng.uniform(math.log(0.1 * rd), math.log(0.45 * rd), k))
    radii[0] = rd * rng.uniform(0.35, 0.55)  # at least one large particle
    bodies = _place(rng, n, nd, radii, 0.97 * rd)
    depth = np.ones(shape, np.float32)
    first = True
    for p, r in bodies:
        ax = r * rng.uniform(0.8, 1.15, nd)
        rot = _random_rotation(rng, nd)
        edge = 0.0 if rng.random() < 0.6 else rng.uniform(0.3, 1.5)
        _paint_ellipsoid(img, p, ax, rot, rng.uniform(0.5, 1.0), edge, "max")
        n_cracks = int(rng.integers(0 if not first else 1, 2 + int(r / (0.12 * rd)) + 1))
        for _ in range(n_cracks):
            normal = _unit(rng, nd)
            extent = r * rng.uniform(0.4, 1.3)
            width = 1 if first else _width(rng)
            first = False
            cp = p + _unit(rng, nd) * r * 0.6 * math.sqrt(rng.random())
            one = np.zeros(shape, bool)
            _paint_crack(one, cp, normal, extent, width, _waves(rng, normal, extent, rng.uniform(0.1, 0.9)))
            depth[one] = np.minimum(depth[one], np.float32(rng.uniform(0.0, 0.15)))
    img *= _texture(shape, rng, rng.uniform(0.02, 0.08), rng.uniform(1.5, 4.0))
    img *= depth
    return img


def _warped_voronoi(
    pts: np.ndarray, idx: tuple[np.ndarray, ...], shape: tuple[int, ...], warp: float, sigma: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi cells of seeds ``pts`` (m, nd) queried at the pixels ``idx`` (an
    ``np.nonzero`` tuple) displaced by ``warp`` px × a smooth random field of correlation
    length ``sigma`` px per axis (curvy walls). Returns ``near`` (k, 2): the nearest and
    second-nearest seed of each pixel, and ``h`` (k,): its distance to their wall, px."""
    q = np.stack(idx, axis=1).astype(np.float32)
    for i in range(len(shape)):
        q[:, i] += warp * _noise(shape, sigma, rng)[idx]
    dist, near = cKDTree(pts).query(q, k=2, workers=1)
    sep = np.linalg.norm(pts[near[:, 1]] - pts[near[:, 0]], axis=1)
    return near, (dist[:, 1] ** 2 - dist[:, 0] ** 2) / (2.0 * np.maximum(sep, 1e-6))


def _network(n: int, nd: int, rng: np.random.Generator) -> np.ndarray:
    shape = (n,) * nd
    img = np.zeros(shape, np.float32)
    c = (n - 1) / 2.0
    rd = DISK_FRACTION * n / 2.0
    r_body = rd * rng.uniform(0.8, 0.97)
    yy, xx = np.ogrid[:n, :n]
    disk = (yy - c) ** 2 + (xx - c) ** 2 <= r_body**2
    body = np.broadcast_to(disk, shape) if nd == 3 else disk
    # cell seeds: uniform plus a few clusters of smaller cells (coarse to fine)
    cell = n * rng.uniform(0.09, 0.18)
    n_uniform = max(8, int((n / cell) ** nd))
    pts = [rng.uniform(-1.0, n, (n_uniform, nd))]
    for _ in range(int(rng.integers(1, 4))):
        cc = _random_point(rng, n, nd, 0.7 * rd)
        spread = n * rng.uniform(0.06, 0.15)
        pts.append(cc + rng.normal(0.0, spread, (int(n_uniform * rng.uniform(0.1, 0.3)) + 2, nd)))
    pts = np.concatenate(pts)
    # curvy walls: query the Voronoi diagram at smoothly warped positions
    idx = np.nonzero(body)
    near, h = _warped_voronoi(pts, idx, shape, cell * rng.uniform(0.12, 0.25), cell * 0.7, rng)
    t_min, t_max = rng.uniform(0.9, 1.1), rng.uniform(2.0, 4.0)
    thick = t_min + (t_max - t_min) * (0.5 + 0.5 * np.tanh(_noise(shape, 2.0 * cell, rng)[idx]))
    wall = h <= 0.5 * thick
    fill = np.where(rng.random(len(pts)) < rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.4, len(pts)), 0.0)
    vals = np.where(wall, 1.0, fill[near[:, 0]]).astype(np.float32)
    img[idx] = vals * np.float32(rng.uniform(0.6, 1.0))
    if rng.random() < 0.5:  # a skin around the sample
        rr = np.sqrt((yy - c) ** 2 + (xx - c) ** 2)
        skin = (rr <= r_body) & (rr >= r_body - rng.uniform(1.0, 3.0))
        skin = np.broadcast_to(skin, shape) if nd == 3 else skin
        img[skin] = np.maximum(img[skin], np.float32(rng.uniform(0.6, 1.0)))
    img *= _texture(shape, rng, rng.uniform(0.02, 0.08), rng.uniform(1.5, 4.0))
    # random cracks through everything
    depth = np.ones(shape, np.float32)
    for j in range(int(rng.integers(4, 13))):
        normal = _unit(rng, nd)
        extent = n * rng.uniform(0.08, 0.3)
        one = np.zeros(shape, bool)
        cp = _random_point(rng, n, nd, 0.8 * r_body, zmargin=0.1 * n)
        _paint_crack(one, cp, normal, extent, 1 if j == 0 else _width(rng),
                     _waves(rng, normal, extent, rng.uniform(0.1, 0.9)))
        depth[one] = np.minimum(depth[one], np.float32(rng.uniform(0.0, 0.15)))
    img *= depth
    return img


def _radial(n: int, nd: int, rng: np.random.Generator) -> np.ndarray:
    shape = (n,) * nd
    img = np.zeros(shape, np.float32)
    rd = DISK_FRACTION * n / 2.0
    if rng.random() < 0.4:
        radii = [rd * rng.uniform(0.6, 0.85)]
    else:
        radii = list(rd * rng.uniform(0.2, 0.5, int(rng.integers(2, 5))))
    bodies = _place(rng, n, nd, radii, 0.97 * rd)
    cracks = np.zeros(shape, bool)
    factor = np.ones(shape, np.float32)
    pore_c, pore_r = [], []
    first = True
    for p, r in bodies:
        ax = r * rng.uniform(0.92, 1.08, nd)
        rot = _random_rotation(rng, nd)
        edge = 0.0 if rng.random() < 0.6 else rng.uniform(0.3, 1.2)
        _paint_ellipsoid(img, p, ax, rot, rng.uniform(0.6, 1.0), edge, "max")
        if rng.random() < 0.3:  # hollow or loose core
            pore_c.append(p)
            pore_r.append(r * rng.uniform(0.05, 0.2))
        for _ in range(int(rng.integers(3, 14))):
            normal = _unit(rng, nd)
            direction = _perpendicular(rng, normal)
            w_out = 1.0 if first else float(_width(rng))
            first = False
            _paint_radial_crack(
                cracks, p, normal, direction,
                r_in=r * rng.uniform(0.0, 0.35), r_out=r * rng.uniform(0.6, 1.15), r_ref=r,
                half_angle=math.radians(rng.uniform(8.0, 35.0)), w_out=w_out, tip=0.25 * r,
                waves=_waves(rng, normal, r, rng.uniform(0.0, 0.3)),
            )
    factor[cracks] = np.float32(rng.uniform(0.0, 0.1))
    # pores: uniformly inside the particles, some a single pixel
    if bodies:
        vols = np.array([r**nd for _, r in bodies])
        for _ in range(_count(rng.uniform(10, 30) * min(1.0, float(vols.sum()) / rd**nd), n, nd)):
            p, r = bodies[int(rng.choice(len(bodies), p=vols / vols.sum()))]
            pore_c.append(p + _unit(rng, nd) * r * 0.9 * rng.random() ** (1.0 / nd))
            pore_r.append(0.5 if rng.random() < 0.4 else rng.uniform(1.0, 3.0))
    _paint_pores(factor, np.array(pore_c).reshape(-1, nd), np.array(pore_r))
    img *= _texture(shape, rng, rng.uniform(0.02, 0.06), rng.uniform(1.5, 4.0))
    img *= factor
    return img


def _outline(n: int, nd: int, rng: np.random.Generator, rd: float) -> np.ndarray:
    """bool (n,)*nd: an irregular sample outline inside the disk of radius ``rd`` — the whole
    disk, or a thresholded smooth random field (one body or several fragments)."""
    c = (n - 1) / 2.0
    yy, xx = np.ogrid[:n, :n]
    rr = np.sqrt((yy - c) ** 2 + (xx - c) ** 2) / rd
    disk = rr <= 1.0
    if rng.random() < 0.25:
        mask = disk
    else:
        field = _noise((n,) * nd, n * rng.uniform(0.04, 0.12), rng)
        field -= np.float32(rng.uniform(0.8, 2.5)) * (rr.astype(np.float32) ** 2 - 0.3)
        mask = (field > 0) & disk
    return np.broadcast_to(mask, (n,) * nd)


def _leaves(n: int, nd: int, rng: np.random.Generator) -> np.ndarray:
    shape = (n,) * nd
    rd = DISK_FRACTION * n / 2.0
    mask = _outline(n, nd, rng, rd)
    img = np.full(shape, np.float32(rng.uniform(0.2, 1.0)))
    # radii from p(r) ∝ r^-(nd+1) on [r_min, r_max]: scale-invariant (dead leaves)
    r_min, r_max = 1.5, 0.25 * n
    covered, target = 0.0, 2.0 * float(np.count_nonzero(mask))
    unit = math.pi if nd == 2 else 4.0 / 3.0 * math.pi
    while covered < target:
        u = rng.random()
        r = (r_min ** -nd - u * (r_min ** -nd - r_max ** -nd)) ** (-1.0 / nd)
        ax = r * rng.uniform(0.3, 1.0, nd) if rng.random() < 0.3 else r * rng.uniform(0.8, 1.2, nd)
        covered += unit * float(np.prod(ax))
        p = _random_point(rng, n, nd, rd)
        value = 0.0 if rng.random() < 0.08 else rng.uniform(0.1, 1.0)
        edge = 0.0 if rng.random() < 0.7 else rng.uniform(0.3, max(0.4, 0.3 * r))
        _paint_ellipsoid(img, p, ax, _random_rotation(rng, nd), value, edge, "set")
    img *= _texture(shape, rng, rng.uniform(0.02, 0.15), rng.uniform(0.7, 4.0))
    img *= mask
    return img


def _pair_uniform(a: np.ndarray, b: np.ndarray, salt: int) -> np.ndarray:
    """A uniform number in [0, 1) for each unordered pair (a, b) of non-negative ints (a
    splitmix64-style hash): the same pair gives the same number wherever it is met."""
    lo, hi = np.minimum(a, b).astype(np.uint64), np.maximum(a, b).astype(np.uint64)
    x = lo * np.uint64(0x9E3779B97F4A7C15) ^ (hi + np.uint64(salt)) * np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(29)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _grains(n: int, nd: int, rng: np.random.Generator) -> np.ndarray:
    shape = (n,) * nd
    rd = DISK_FRACTION * n / 2.0
    # secondary particles: one large, up to three smaller
    radii = rd * rng.uniform(0.15, 0.45, int(rng.integers(1, 5)))
    radii[0] = rd * rng.uniform(0.45, 0.85)
    bodies = _place(rng, n, nd, radii, 0.97 * rd)
    body = np.zeros(shape, np.float32)
    for p, r in bodies:
        edge = 0.0 if rng.random() < 0.6 else rng.uniform(0.3, 1.2)
        _paint_ellipsoid(body, p, r * rng.uniform(0.85, 1.15, nd), _random_rotation(rng, nd), 1.0, edge, "max")
    idx = np.nonzero(body > 0.01)  # (a soft edge leaves ~1e-4 across the painted box)
    # primary grains: Voronoi cells of uniform seeds, queried at warped positions (curvy walls)
    grain = rng.uniform(6.0, 30.0) * min(1.0, n / 256.0) + 2.0  # px across a grain
    pts = rng.uniform(-1.0, n, (max(8, int((n / grain) ** nd)), nd))
    near, h = _warped_voronoi(pts, idx, shape, grain * rng.uniform(0.0, 0.2), grain * 0.7, rng)
    level = np.float32(rng.uniform(0.5, 1.0))
    value = level * np.clip(1.0 + rng.uniform(0.02, 0.2) * rng.standard_normal(len(pts)), 0.5, 1.5)
    vals = value[near[:, 0]].astype(np.float32)
    # closed boundaries: a faint dip; opened ones: a crack, likelier towards the core
    vals[h <= 0.5] *= np.float32(1.0 - rng.uniform(0.0, 0.3))
    xyz = np.stack(idx, axis=1)
    core = np.zeros(len(xyz), np.float32)
    for p, r in bodies:
        d = np.sqrt(((xyz - p) ** 2).sum(axis=1)) / r
        core = np.maximum(core, np.clip(1.0 - d, 0.0, 1.0).astype(np.float32))
    p_open = rng.uniform(0.05, 0.5) * (0.3 + 1.4 * core)
    width = rng.uniform(1.0, 3.0) * (0.7 + 0.6 * (0.5 + 0.5 * np.tanh(_noise(shape, 3.0 * grain, rng)[idx])))
    opened = (_pair_uniform(near[:, 0], near[:, 1], int(rng.integers(1 << 30))) < p_open) & (h <= 0.5 * width)
    vals[opened] = level * np.float32(rng.uniform(0.0, 0.12))
    img = np.zeros(shape, np.float32)
    img[idx] = vals * body[idx]
    img *= _texture(shape, rng, rng.uniform(0.03, 0.2), rng.uniform(0.7, 3.0))
    factor = np.ones(shape, np.float32)  # pores, some a single pixel
    if bodies:
        vols = np.array([r**nd for _, r in bodies])
        centers, pr = [], []
        for _ in range(_count(rng.uniform(5, 25) * min(1.0, float(vols.sum()) / rd**nd), n, nd)):
            p, r = bodies[int(rng.choice(len(bodies), p=vols / vols.sum()))]
            centers.append(p + _unit(rng, nd) * r * 0.9 * rng.random() ** (1.0 / nd))
            pr.append(0.5 if rng.random() < 0.4 else rng.uniform(1.0, 3.0))
        _paint_pores(factor, np.array(centers).reshape(-1, nd), np.array(pr))
    return img * factor


_GENERATORS = {"heterogeneous": _heterogeneous, "cracked": _cracked, "network": _network, "radial": _radial,
               "leaves": _leaves, "grains": _grains}


def _check_family(family: object) -> str:
    if not isinstance(family, str) or family not in _GENERATORS:
        raise FlytomoError(None, f"unknown phantom family {family!r}; choose one of {', '.join(ALL_FAMILIES)}")
    return str(family)


def make_phantom(
    family: str, size: int, seed: int, ndim: int = 2, max_line_integral: float = 2.0
) -> np.ndarray:
    """One random phantom of a training family.

    Parameters
    ----------
    family : one of :data:`FAMILIES` or :data:`EXTRA_FAMILIES`.
    size : n, pixels per side (≥ 16).
    seed : ≥ 0; the phantom is a pure function of (family, size, seed, ndim). Use seeds
        from :func:`split_seed` to keep training, validation and test apart.
    ndim : 2 for an image (n, n) = [y, x], 3 for a volume (n, n, n) = [z, y, x].
    max_line_integral : the densest ray's line integral after scaling (dimensionless).

    Returns
    -------
    float32 array (n, n) or (n, n, n), attenuation per pixel, ≥ 0, zero outside the
    reconstruction disk / cylinder (:func:`support_mask`), densest ray ≈ max_line_integral.
    """
    family = _check_family(family)
    n = _check_int("phantom size", size, _MIN_SIZE)
    seed = _check_int("phantom seed", seed, 0)
    ndim = _check_ndim(ndim)
    target = _check_positive("max_line_integral", max_line_integral)
    rng = np.random.default_rng([seed, ALL_FAMILIES.index(family), ndim])
    img = _GENERATORS[family](n, ndim, rng)
    np.maximum(img, 0.0, out=img)
    img *= support_mask(n, ndim)
    return _scale_to(img, target)


def grid_lines(
    size: int, spacing: int = 8, value: float | None = None, *, max_line_integral: float = 2.0
) -> np.ndarray:
    """The 1-px grid-line pattern of the seed's Fig. 1b.

    Horizontal and vertical lines 1 px wide every ``spacing`` px, through the central row
    and column ``n // 2`` (rows and columns i with (i − n//2) mod spacing = 0), inside the
    reconstruction disk.

    Parameters
    ----------
    size : n, pixels per side (≥ 16).
    spacing : line pitch in px (≥ 2).
    value : attenuation per pixel on the lines; None (default) scales it so that the
        densest ray (along the longest line) integrates to ``max_line_integral``.

    Returns
    -------
    float32 (n, n) image, attenuation per pixel: ``value`` on the lines, 0 elsewhere.
    """
    n = _check_int("phantom size", size, _MIN_SIZE)
    spacing = _check_int("grid spacing", spacing, 2)
    target = _check_positive("max_line_integral", max_line_integral)
    on = (np.arange(n) - n // 2) % spacing == 0
    img = (on[:, None] | on[None, :]).astype(np.float32)
    img *= support_mask(n, 2)
    if value is None:
        longest = max(float(img.sum(axis=0).max()), float(img.sum(axis=1).max()))
        img *= np.float32(target / longest)
    else:
        if not math.isfinite(float(value)) or float(value) < 0:
            raise FlytomoError(None, f"grid line value must be a finite number ≥ 0, got {value!r}")
        img *= np.float32(value)
    return img


def test_images(
    size: int, n_per_family: int = 5, seed: int = 1000, ndim: int = 2, max_line_integral: float = 2.0
) -> list[tuple[str, np.ndarray]]:
    """Fixed test phantoms, ``n_per_family`` of each family, from the test seed range.

    Image i of every family has seed ``TEST_SEED0 + seed + i`` (families draw from
    different random streams, so equal seeds do not give related images). Training
    (< VALIDATION_SEED0) and validation seeds never reach this range.

    Parameters
    ----------
    size : n, pixels per side. n_per_family : images per family (≥ 1).
    seed : offset inside the test range, 0 ≤ seed and seed + n_per_family ≤ SEED_BLOCK.
    ndim : 2 (images) or 3 (volumes).

    Returns
    -------
    list of (family, float32 array (n, n) or (n, n, n)), families in :data:`FAMILIES`
    order, ``len(FAMILIES) · n_per_family`` entries.
    """
    n_per_family = _check_int("n_per_family", n_per_family, 1)
    seed = _check_int("test seed offset", seed, 0)
    if seed + n_per_family > SEED_BLOCK:
        raise FlytomoError(None, f"test seeds {seed}..{seed + n_per_family - 1} leave the test range (< {SEED_BLOCK})")
    return [
        (family, make_phantom(family, size, TEST_SEED0 + seed + i, ndim, max_line_integral))
        for family in FAMILIES
        for i in range(n_per_family)
    ]


test_images.__test__ = False  # not a pytest test, despite the name


# ───────────────────────────── the heating experiment ─────────────────────────────


def _heating_streams(seed: int) -> list[np.random.Generator]:
    """Independent generators: [envelope, texture, pores, cracks]."""
    seed = _check_int("particle seed", seed, 0)
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, _HEATING_KEY]).spawn(4)]


def _envelope(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The particle ellipsoid: (q field (n, n, n) float32, centre (3,), semi-axes (3,), rotation)."""
    c = (n - 1) / 2.0
    center = np.full(3, c) + rng.uniform(-0.015, 0.015, 3) * n
    axes = 0.35 * n * rng.uniform(0.94, 1.06, 3)
    rot = _random_rotation(rng, 3)
    b = _box(n, center, 2.0 * n)
    assert b is not None
    q = _ellipsoid_q(b[1], axes, rot)
    return np.ascontiguousarray(q, dtype=np.float32), center, axes, rot


def particle_mask(size: int, seed: int) -> np.ndarray:
    """The heating particle's envelope (solid, pores and cracks together).

    Returns
    -------
    bool (n, n, n) = [z, y, x]: True inside the ellipsoid of :func:`heating_particle` with
    the same size and seed. Crack fraction = crack_mask.sum() / particle_mask.sum().
    """
    n = _check_int("particle size", size, _MIN_SIZE)
    q, *_ = _envelope(n, _heating_streams(seed)[0])
    return q <= 1.0


@lru_cache(maxsize=2)
def _heating_base(n: int, seed: int, target: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The level-independent part of the heating particle (cached, read-only arrays):
    (uncracked volume (n, n, n) float32 scaled to densest ray ``target``, solid mask
    (inside the envelope and not a pore), centre (3,), semi-axes (3,))."""
    g_env, g_tex, g_pore, _ = _heating_streams(seed)
    shape = (n, n, n)
    q, center, axes, rot = _envelope(n, g_env)
    inside = q <= 1.0
    base = _texture(shape, g_tex, 0.04, max(1.5, 0.04 * n))
    base *= inside
    # pores: fixed positions and radii (1 to ~0.04 n px), inside q ≤ 0.85
    n_pores = 14
    pc = np.empty((n_pores, 3))
    for i in range(n_pores):
        u = _unit(g_pore, 3) * 0.85 * g_pore.random() ** (1.0 / 3.0)
        pc[i] = center + rot @ (u * axes)
    pr = g_pore.uniform(1.0, max(1.5, 0.04 * n), n_pores)
    pores = np.ones(shape, np.float32)
    _paint_pores(pores, pc, pr)
    base *= pores
    _scale_to(base, target)  # the same solid density at every level
    solid = inside & (pores > 0)
    for arr in (base, solid, center, axes):
        arr.setflags(write=False)
    return base, solid, center, axes


def heating_particle(
    size: int,
    crack_level: float,
    seed: int,
    *,
    n_cracks: int = 12,
    max_line_integral: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A dense secondary particle at a given state of cracking, for the synthetic heating run.

    The particle is an ellipsoid ~0.7·n across with a mild smooth texture (±~4 %), a fixed
    set of small round pores, and ``n_cracks`` radial crack sheets (planar, slightly curved,
    sectors of planes through the centre). All geometry comes from ``seed``; only the cracks
    depend on ``crack_level``: they grow outward from near the centre (extent reaches the
    surface by level ≈ 0.7–1) and open (1 px wide near the centre, 2–3 px at the surface at
    level 1). The crack set at a level contains the crack set at every lower level, so the
    crack fraction rises monotonically; level 0 has no cracks. Run the levels backwards to
    model healing. The level-independent part (particle, texture, pores, scaling) is cached
    for the last two (size, seed) pairs, so a series of levels costs little more than the
    cracks themselves.

    Parameters
    ----------
    size : n, voxels per side (≥ 16; 64 takes well under a second, 128 a few seconds).
    crack_level : 0 ≤ level ≤ 1.
    seed : ≥ 0, fixes particle, texture, pores and crack geometry.
    n_cracks : number of crack sheets (the first k sheets do not depend on n_cracks).
    max_line_integral : densest ray of the uncracked particle (the same solid density is
        used at every level, so cracks only lower the line integrals).

    Returns
    -------
    volume : float32 (n, n, n) = [z, y, x], attenuation per voxel: solid ≈ constant, pores
        and cracks 0, zero outside the particle.
    crack_mask : bool (n, n, n): crack voxels inside the particle (pores excluded).
    """
    n = _check_int("particle size", size, _MIN_SIZE)
    try:
        level = float(crack_level)
    except (TypeError, ValueError):
        raise FlytomoError(None, f"crack_level must be a number in [0, 1], got {crack_level!r}") from None
    if not (0.0 <= level <= 1.0):
        raise FlytomoError(None, f"crack_level must be in [0, 1], got {crack_level!r}")
    n_cracks = _check_int("n_cracks", n_cracks, 0)
    seed = _check_int("particle seed", seed, 0)
    target = _check_positive("max_line_integral", max_line_integral)
    base_ro, solid, center, axes = _heating_base(n, seed, target)
    base = base_ro.copy()
    g_crack = _heating_streams(seed)[3]
    shape = (n, n, n)

    # cracks: geometry from the seed; extent and opening grow with the level
    cracks = np.zeros(shape, bool)
    a_max = float(axes.max())
    tip = 0.3 * a_max
    for _ in range(n_cracks):
        normal = _unit(g_crack, 3)
        direction = _perpendicular(g_crack, normal)
        r_in = a_max * g_crack.uniform(0.05, 0.2)
        half_angle = math.radians(g_crack.uniform(10.0, 22.0))
        w_out = g_crack.uniform(2.0, 3.0)
        speed = g_crack.uniform(1.0, 1.4)
        waves = _waves(g_crack, normal, a_max, g_crack.uniform(0.05, 0.2), n_waves=2)
        if level <= 0.0:
            continue
        reach = a_max * 1.02 + tip  # at full extent the crack is fully open at the surface
        r_out = r_in + (reach - r_in) * min(1.0, level * speed)
        _paint_radial_crack(
            cracks, center, normal, direction, r_in=r_in, r_out=r_out, r_ref=a_max,
            half_angle=half_angle, w_out=1.0 + (w_out - 1.0) * level, tip=tip, waves=waves,
        )
    crack_mask = cracks & solid
    base[crack_mask] = 0.0
    return base, crack_mask
