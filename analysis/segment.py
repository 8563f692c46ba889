"""Particle, crack and pore segmentation of one reconstructed volume, blockwise along z.

A volume ``(z, y, x)`` float32 (attenuation per pixel) goes through:

1. **Envelope** — Gaussian (and optionally median) smoothing, a threshold (Otsu on the
   histogram of the smoothed volume, or a configured value), the particle's pieces (the
   largest connected component and every piece of at least ``min_piece_fraction`` (0.05 %) of it
   that gaps of at most ``piece_gap`` voxels link to it: a crack that runs right through
   the particle splits it into pieces that are still one particle), a morphological
   closing with a ball (so that surface-breaking and through-cracks count as inside the
   particle), and hole filling (beyond the first and last rows the volume counts as those
   rows repeated, so a gap that runs through every row is a hole too). The envelope is the particle *including* its
   cracks and pores: it is the denominator of the crack volume fraction.
2. **Defects** — voxels of the (lightly smoothed) volume inside the envelope darker than
   ``background + defect_fraction × (solid − background)``; ``solid`` and ``background``
   are the medians of the smoothed values inside the envelope and outside it. In a
   heavily cracked particle the cracks' grey flanks pull the solid median down, and the
   crack volume with it (docs/benchmarks.md's foreign experiment: −2 % of the true
   fraction at 6 % cracks, −12 % at 16 %, −33 % at 30 %), so where the first threshold's
   defects fill more than ``solid_far[0]`` of the envelope the solid level moves towards
   the median of the voxels more than ``solid_far_gap`` voxels from any defect and from
   the surface (all the way from ``solid_far[1]`` on) and the defects are thresholded
   again. Below ``solid_far[0]`` the envelope's median stands, bit for bit. Two options, off by
   default, for a particle that cracks between its grains (many 1–2 voxel cracks the blur
   leaves grey): ``solid_estimate="shorth"`` (the middle of the shortest half of the
   envelope's histogram instead of its median) and ``valley_fraction`` (also voxels that much
   of the contrast below the grey closing by ``ball(valley_radius)``: narrow valleys). On by
   default, ``thin_cracks``: valleys a quarter of the contrast deep, away from those defects, that
   are larger than twice any bright ridge the same test finds (noise makes both alike; the
   volume's own noise is the reference) and are not rings around the axis: 1-voxel cracks
   blurred by σ 0.8 read 0.19 % for 2.89 % without it, 2.38 % with it. A connected
   component (26-connected) with fewer than ``min_defect_voxels`` voxels deeper than
   ``boundary_margin`` below the envelope surface is noise or surface roughness and is
   dropped (a crack that breaks the surface keeps its mouth).
3. **Shape** — each remaining component is a *pore* when it is compact (aspect ratio
   ``sqrt(λ_min / λ_max)`` of the inertia-tensor eigenvalues ≥ ``pore_min_aspect``, fill ratio
   ``voxels / volume of the ellipsoid with the same second moments`` ≥ ``pore_min_fill``, and
   not thin: its thickness — the diameter of the largest ball inside it — at least half of
   ``pore_min_aspect`` times that ellipsoid's longest axis), and a *crack* otherwise (flat or
   elongated, a thin curved shell, or a network of thin gaps, which its moments call
   compact). Optionally (``pore_min_thickness``, off by default) a void at least that
   thick is a pore from aspect ``THICK_PORE_MIN_ASPECT`` (0.25) up: a flattened hollow core,
   which is as flat as a crack opened as wide, so no default can tell them apart.
   One that runs through every row (its shape cut off at both ends: in a thin slab, where
   pieces of cracks look compact) is judged by its sections by the slices: a pore when they
   are discs (medians over its rows of the same measures in 2D ≥ ``THROUGH_PORE_ASPECT``,
   ``THROUGH_PORE_FILL``) at least as wide as the slab is tall.
   Round pores are looked for first in the opening of the defects by a ball of
   ``pore_min_radius`` (thin cracks vanish in it), so a pore a crack runs into stays a pore.
4. **Crack volume** — ``crack_volume="partial_volume"`` (default): the missing attenuation over the crack voxels and their neighbours,
   ``Σ (solid − v) / (solid − background)``, which keeps the volume of thin cracks that the
   reconstruction's blur makes partly grey (see :func:`_partial_volume`); ``"threshold"``:
   the crack voxels counted. On the synthetic heating experiment (64³, 24 scans) the
   partial-volume estimate has the lower error for every method (docs/benchmarks.md).
   ``pv_reference="local"`` (off by default) measures the missing attenuation against the
   mean solid around each voxel instead of the one solid level.

Memory: the volume is read in slabs of ``block_z`` rows plus the halo each filter needs
(``source[z0:z1]`` — a numpy array, a zarr array or any object with ``shape`` and
slicing along the first axis), so at most one float slab is held at a time; the volume is
read three times (range, envelope smoothing, defect smoothing). The full-size arrays are
the smoothed volume quantised to 16 bits (2 bytes/voxel, 65536 levels between the volume's
min and max), boolean masks (1 byte/voxel each) and one ``int32`` label image; scipy's
labelling adds a temporary of about the same size. Measured peak: about 11 bytes/voxel
above the baseline, 1.4 GB for a 512³ volume (the float32 volume alone would be 0.5 GB),
45–90 s for 512³ on one core of a busy shared machine. ``thin_cracks`` (the default) adds a
grey closing and opening and a labelling: about 15 bytes/voxel at its peak (256³: 255 MB
without, 315 MB with it, above the volume) and 1.4–1.8× the time (192³: 3.0 s → 5.3 s). Every blockwise step gives the same
result as the whole-volume operation (tested).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import Field, field_validator
from scipy import ndimage as ndi

from recon.yamlfile import ConfigModel

__all__ = [
    "SegmentationParams",
    "SegmentationResult",
    "segment_volume",
    "otsu_from_histogram",
    "ball",
]

NO_PARTICLE = "no particle found"
NO_DATA = "no data (volume is constant)"
NON_FINITE = "incomplete volume: NaN or infinite values"
#: slices of one value inside the particle: detector rows that measured nothing, left empty
#: (:func:`recon.io.preprocess.fill_empty_rows`), which would read as a crack through it
EMPTY_SLICES = "incomplete volume: empty slices inside the particle"
NOT_RECONSTRUCTED = "not reconstructed (no data)"
#: the status of a volume file (not a flytomo reconstruction) whose every voxel is NaN or infinite
ALL_NON_FINITE = "no data (every voxel NaN or infinite)"
OK = "ok"
#: the defects' darkest values (this quantile) tell the level of an empty void where they lie
#: below the outside's darkest (the same quantile) by more than VOID_GAP of the solid-to-medium contrast
VOID_QUANTILE = 0.01
VOID_GAP = 0.15
#: fewer defect voxels than this do not tell the level of an empty void
VOID_MIN_VOXELS = 200
#: a "particle" that fills this share of the volume leaves no background to measure cracks
#: against: an inverted contrast (air brighter than the sample), or a field inside the particle
FILLS_FIELD_SHARE = 0.99
FILLS_FIELD = "the particle fills the field"
#: a separate particle of at least this share of the analysed one's voxels is reported
#: (``other_particles``): the fractions are of the largest particle only
OTHER_PARTICLE_SHARE = 0.05
#: below this equivalent-sphere radius (voxels) crack fractions are biased by tens of percent
#: (the closing and the partial-volume rim are a large part of the particle; a blind probe of
#: 96^3 phantoms with 2-voxel cracks: radius 8 +31 %, 12 -32 %, 18 -20 %, 26 -12 %, 40 -10 %)
SMALL_PARTICLE_RADIUS = 20.0
#: a speck_fraction above this marks a volume noisy at the crack scale: FBP of a sphere at I0 300
#: and 60 projections, 2.3 % (cracks over-counted by 1.4 points); every other store of
#: docs/benchmarks.md's crack benches, ≤ 0.8 % (modified MLEM of the same scans 0.3 %)
NOISY_SPECK_FRACTION = 0.01
#: an edge_sigma_px at or above this marks a volume too blurred for thin cracks: cracks 1-3 px
#: wide in a 128³ heating particle (2.56 % of it) read 1.86 % at a Gaussian blur of σ 1 px, 0.62 %
#: at 1.5, 0.15 % at 2 (docs/benchmarks.md "Blurred volumes"); flytomo's own reconstructions of
#: its simulated scans measure 0.39-0.52 px, the truth 0.37 (the surface's own pixels)
BLURRED_EDGE_SIGMA_PX = 1.0


def equivalent_radius(volume_vox):
    """Radius (voxels) of the sphere of ``volume_vox`` voxels (a number or an array of them)."""
    return (3.0 * volume_vox / (4.0 * math.pi)) ** (1.0 / 3.0)


class SegmentationParams(ConfigModel):
    """Parameters of :func:`segment_volume` (the experiment config embeds this model).

    Lengths are in voxels, thresholds in attenuation per pixel (the reconstruction's unit).
    """

    # envelope
    sigma: float = Field(1.0, ge=0, description="Gaussian sigma (voxels) before the envelope threshold")
    median_size: int = Field(0, ge=0, description="median filter width (voxels) before the Gaussian; 0 = off")
    envelope_threshold: float | None = Field(
        None, description="absolute envelope threshold; None = Otsu on the smoothed volume")
    closing_radius: int = Field(4, ge=0, description="ball radius (voxels) of the envelope closing "
                                "(bridges the mouths of cracks that reach the surface)")
    piece_gap: int = Field(
        6, ge=0, description="pieces of the particle split by cracks up to this wide (voxels) stay "
        "in the envelope; 0 = the largest connected piece only")
    min_piece_fraction: float = Field(
        0.0005, ge=0, le=1, description="a piece smaller than this fraction of the largest one is "
        "noise, not part of the particle (a fragment that cracks cut off is often 0.1-0.5 %)")
    min_particle_voxels: int = Field(
        500, ge=1, description="an envelope smaller than this means no particle was found")
    min_contrast: float = Field(
        3.0, ge=0, description="least (solid - background) / noise of the Otsu split "
        "for a particle to count as found (pure noise gives about 2.7)")
    # defects
    defect_sigma: float = Field(0.5, ge=0, description="Gaussian sigma (voxels) before the defect threshold")
    defect_fraction: float = Field(
        0.5, gt=0, lt=1, description="defect = darker than background + fraction x (solid - background)")
    defect_threshold: float | None = Field(
        None, description="absolute defect threshold; overrides defect_fraction when set")
    solid_estimate: Literal["median", "shorth"] = Field(
        "median", description="the solid level before solid_far: the median of the envelope's "
        "smoothed values, or the middle of their shortest half (the densest half of the histogram: "
        "the grey flanks of many thin cracks, a tail on the dark side, move it less)")
    solid_far: tuple[float, float] = Field(
        (0.05, 0.15), description="defect shares of the envelope (low, high) between which the "
        "solid level moves from the envelope's median to the median of the voxels more than "
        "solid_far_gap voxels from any defect (many cracks' grey flanks pull the first down); "
        "(1, 1) = always the envelope's median")
    valley_fraction: float | None = Field(
        None, gt=0, lt=1, description="also defects: voxels this fraction of (solid - background) "
        "below the grey closing of the defect-smoothed volume by ball(valley_radius) (thin cracks "
        "the blur left grey); None = off")
    valley_radius: int = Field(2, ge=1, description="ball radius (voxels) of the valley closing")
    thin_cracks: bool = Field(
        True, description="also thin cracks the blur left grey: dark valleys at least thin_depth of the contrast "
        "below the grey closing by ball(2), away from the thresholded defects, kept where they are larger than "
        "any bright ridge the same test finds (noise makes both alike) and are not rings around the axis")
    thin_depth: float = Field(0.25, gt=0, lt=1, description="thin_cracks: the valleys' least depth, as a "
                              "fraction of (solid - background)")
    solid_far_gap: int = Field(3, ge=1, description="voxels from any defect (and from the envelope's "
                               "surface) that the far median leaves out")
    boundary_margin: int = Field(
        1, ge=0, description="a defect needs min_defect_voxels deeper than this many voxels below "
        "the envelope surface (drops dark surface patches, keeps the mouths of cracks)")
    min_defect_voxels: int = Field(8, ge=1, description="smaller defect components are noise")
    pore_min_radius: int = Field(
        2, ge=0, description="round pores are looked for first where a ball of this radius fits "
        "in the defects (thinner cracks do not hold one), so a pore a crack runs into stays a "
        "pore; 0 = off")
    # shape criterion (inertia tensor of each component): crack vs pore
    pore_min_aspect: float = Field(
        0.4, ge=0, le=1, description="pore needs sqrt(lambda_min/lambda_max) of its inertia tensor >= this")
    pore_min_fill: float = Field(
        0.5, ge=0, description="pore needs voxels / equivalent-ellipsoid volume >= this")
    pore_min_thickness: int = Field(
        0, ge=0, description="a void at least this thick (voxels: the diameter of the largest ball "
        "inside it) is a pore from aspect 0.25 up, not only from pore_min_aspect: for a flattened "
        "hollow core, which otherwise counts as a crack; a crack opened that wide is as flat and "
        "would count as a pore (blind probes: 16 made cracks opened 18-24 voxels pores), so 0 = off")
    # crack volume
    crack_volume: Literal["threshold", "partial_volume"] = Field(
        "partial_volume", description="threshold: crack voxels counted; partial_volume: the missing "
        "attenuation around each crack, in voxels of solid (keeps thin cracks that blur thins)")
    pv_margin: int = Field(2, ge=0, description="partial_volume: neighbours up to this many steps "
                           "from a crack voxel are summed")
    pv_reference: Literal["global", "local"] = Field(
        "global", description="partial_volume: the missing attenuation against the one solid level, "
        "or against the mean of the solid voxels (envelope, beyond pv_margin + 1 of any defect) in a "
        "cube of 2 pv_window + 1 around each voxel (the particle's own solid where it differs)")
    pv_window: int = Field(6, ge=1, description="pv_reference local: half the cube's side (voxels)")
    # memory
    block_z: int = Field(64, ge=1, description="rows per slab of the blockwise filters")

    @field_validator("solid_far")
    @classmethod
    def _shares_in_order(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] <= v[1] <= 1.0:
            raise ValueError(f"solid_far needs 0 <= low <= high <= 1, got {list(v)}")
        return v


class VolumeSource(Protocol):  # pragma: no cover - typing only
    shape: tuple[int, ...]

    def __getitem__(self, key: Any) -> Any: ...


@dataclass
class SegmentationResult:
    """Per-volume result. Voxel counts are numbers of voxels; fractions are of the particle."""

    status: str
    particle_volume_vox: int = 0
    crack_volume_vox: int = 0
    pore_volume_vox: int = 0
    n_cracks: int = 0
    n_pores: int = 0
    #: separate particles of at least OTHER_PARTICLE_SHARE of the analysed one's voxels, left out
    other_particles: int = 0
    envelope_threshold: float = math.nan
    defect_threshold: float = math.nan
    solid_level: float = math.nan
    background_level: float = math.nan
    #: crack voxels by threshold (equal to crack_volume_vox unless crack_volume="partial_volume")
    crack_voxels_thresholded: int = 0
    #: voxels of the defect specks dropped as noise: components smaller than min_defect_voxels
    #: that lie wholly deeper than boundary_margin (not surface roughness)
    speck_voxels: int = 0
    #: voxels of the grey thin cracks ``thin_cracks`` added to the defects (:func:`_add_thin_cracks`)
    thin_crack_voxels: int = 0
    #: voxels of dark rings around the axis (ring artifacts, :func:`_is_ring`), left out of the cracks
    ring_voxels: int = 0
    #: the blur of the particle's surface as a Gaussian σ (px, in-plane; :func:`edge_sigma_px`)
    edge_sigma_px: float = math.nan
    #: per defect component: voxels, aspect, fill, kind ("crack" | "pore"), centroid (z, y, x)
    components: list[dict] = field(default_factory=list)
    #: (z, y, x) bool masks, only when ``return_masks=True``
    envelope: np.ndarray | None = None
    cracks: np.ndarray | None = None
    pores: np.ndarray | None = None

    @property
    def crack_fraction(self) -> float:
        return self.crack_volume_vox / self.particle_volume_vox if self.particle_volume_vox else math.nan

    @property
    def pore_fraction(self) -> float:
        return self.pore_volume_vox / self.particle_volume_vox if self.particle_volume_vox else math.nan

    @property
    def speck_fraction(self) -> float:
        """Share of the particle in defect specks dropped as noise: a noisy reconstruction
        (above :data:`NOISY_SPECK_FRACTION`) also has noise clusters large enough to count as cracks."""
        return self.speck_voxels / self.particle_volume_vox if self.particle_volume_vox else math.nan

    def summary(self) -> dict:
        """The scalar results as a plain dict (picklable, JSON-able)."""
        return {
            "status": self.status,
            "particle_volume_vox": int(self.particle_volume_vox),
            "crack_volume_vox": int(self.crack_volume_vox),
            "pore_volume_vox": int(self.pore_volume_vox),
            "crack_fraction": float(self.crack_fraction),
            "pore_fraction": float(self.pore_fraction),
            "n_cracks": int(self.n_cracks),
            "n_pores": int(self.n_pores),
            "other_particles": int(self.other_particles),
            "envelope_threshold": float(self.envelope_threshold),
            "defect_threshold": float(self.defect_threshold),
            "solid_level": float(self.solid_level),
            "background_level": float(self.background_level),
            "crack_voxels_thresholded": int(self.crack_voxels_thresholded),
            "speck_fraction": float(self.speck_fraction),
            "edge_sigma_px": float(self.edge_sigma_px),
            "ring_fraction": self.ring_voxels / self.particle_volume_vox if self.particle_volume_vox else 0.0,
        }


# ----------------------------------------------------------------------------- helpers
def ball(radius: int) -> np.ndarray:
    """A digital ball of ``radius`` voxels: bool (2r+1,)*3."""
    r = int(radius)
    z, y, x = np.ogrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (z * z + y * y + x * x) <= r * r


def otsu_from_histogram(counts: np.ndarray, centers: np.ndarray) -> float:
    """Otsu's threshold from a histogram (counts per bin, bin centres)."""
    counts = np.asarray(counts, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    w0 = np.cumsum(counts)
    w1 = w0[-1] - w0
    m = np.cumsum(counts * centers)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = m / w0
        mu1 = (m[-1] - m) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    i = int(np.argmax(between))
    return float(0.5 * (centers[i] + centers[i + 1]))


def _hist_median(counts: np.ndarray, edges: np.ndarray) -> float:
    return _hist_quantile(counts, edges, 0.5)


def _hist_quantile(counts: np.ndarray, edges: np.ndarray, q: float) -> float:
    """The ``q`` quantile (0-1) of the values a histogram of ``counts`` over ``edges`` holds."""
    total = counts.sum()
    if total == 0:
        return math.nan
    c = np.cumsum(counts)
    i = int(np.searchsorted(c, q * total))
    before = c[i - 1] if i > 0 else 0
    frac = (q * total - before) / max(counts[i], 1)
    return float(edges[i] + frac * (edges[i + 1] - edges[i]))


def _hist_shorth(counts: np.ndarray, edges: np.ndarray) -> float:
    """The middle of the shortest interval of bins holding at least half the counts of the
    histogram ``counts`` (bins ``edges``): a location that a tail on one side moves little."""
    c = np.concatenate([[0], np.cumsum(counts)])
    half = 0.5 * c[-1]
    ends = np.searchsorted(c, c[:-1] + half, side="left")  # bins i..ends-1 hold >= half
    ok = ends < c.size
    starts = np.flatnonzero(ok)
    widths = ends[ok] - starts
    i = int(starts[np.argmin(widths)])
    return 0.5 * (float(edges[i]) + float(edges[int(ends[i])]))


def _hist_class_stats(counts: np.ndarray, centers: np.ndarray, thr: float):
    """(mean, variance) below and above ``thr``."""
    out = []
    for sel in (centers < thr, centers >= thr):
        w = counts[sel].astype(np.float64)
        c = centers[sel]
        n = w.sum()
        if n == 0:
            out.append((math.nan, math.nan))
            continue
        mu = float((w * c).sum() / n)
        out.append((mu, float((w * (c - mu) ** 2).sum() / n)))
    return out


LEVELS = 65536  # quantisation levels of the smoothed volumes


def _quantise(x: np.ndarray, lo: float, scale: float) -> np.ndarray:
    """float → uint16 level round((x − lo)·scale), clipped to 0..LEVELS−1."""
    y = (x - np.float32(lo)) * np.float32(scale)
    np.rint(y, out=y)
    np.clip(y, 0, LEVELS - 1, out=y)
    return y.astype(np.uint16)


#: a NaN mask's radius must be at least this share of half the slice's narrower side (a smaller
#: "mask" leaves little data: an incomplete volume)
CIRCLE_MASK_MIN_RADIUS = 0.5


def _fill_outside_circle(source, block: int) -> float | None:
    """Where a volume's NaN voxels are exactly those outside one disc in every slice (a mask
    tools write outside the reconstruction circle: tomopy's ``circ_mask`` of any ratio from
    :data:`CIRCLE_MASK_MIN_RADIUS`, centred or not), the value to read there instead: air, the
    median of the finite voxels below the Otsu threshold of a sample of them (whatever the
    sample reaches at the mask's edge); else None (no NaN, or NaN elsewhere: an incomplete
    volume)."""
    nz, ny, nx = (int(n) for n in source.shape)
    yy, xx = np.mgrid[:ny, :nx]
    disc = None
    samples = []
    stride = max(1, (nz * ny * nx) // 1_000_000)
    for z0, z1 in _slabs(nz, block):
        s = _read(source, z0, z1)
        nan = np.isnan(s)
        if not nan.any() or np.isinf(s).any() or nan.all():
            return None  # no mask here (NaN further on: incomplete), or broken values
        valid = ~nan.any(axis=0)
        area = float(valid.sum())
        if not area:
            return None
        here = (float(yy[valid].mean()), float(xx[valid].mean()), math.sqrt(area / math.pi))  # centre, radius
        if disc is None:
            disc = here
        if max(abs(a - b) for a, b in zip(here, disc)) > 1.5 or disc[2] < CIRCLE_MASK_MIN_RADIUS * min(ny, nx) / 2.0:
            return None
        r = np.hypot(yy - disc[0], xx - disc[1])
        inside, outside = r < disc[2] - 1.5, r > disc[2] + 1.5
        if (nan & inside).any() or not outside.any() or (nan[:, outside].mean(axis=1) < 0.99).any():
            return None
        samples.append(s[~nan][::stride])
    values = np.concatenate(samples)
    if values.size < 2 or not np.ptp(values) > 0:
        return None
    counts, edges = np.histogram(values, bins=256)
    thr = otsu_from_histogram(counts, (edges[:-1] + edges[1:]) / 2)
    low = values[values <= thr]
    return float(np.median(low)) if low.size else float(values.min())


def _value_range(source, block: int) -> tuple[float, float, int, list[np.ndarray], np.ndarray]:
    """(min, max, non-finite voxels, strided samples, (z,) slices that hold one value) of a
    volume, slab by slab; the min, max and samples of the finite slabs only (a volume with any
    non-finite voxel is not used)."""
    nz, ny, nx = (int(n) for n in source.shape)
    lo, hi = math.inf, -math.inf
    bad = 0
    stride = max(1, (nz * ny * nx) // 2_000_000)
    samples = []
    flat = np.zeros(nz, dtype=bool)
    for z0, z1 in _slabs(nz, block):
        s = _read(source, z0, z1)
        fin = np.isfinite(s)
        if not fin.all():
            bad += int(s.size - np.count_nonzero(fin))
            continue  # the volume is not usable; keep counting
        lo, hi = min(lo, float(s.min())), max(hi, float(s.max()))
        flat[z0:z1] = s.reshape(z1 - z0, -1).min(axis=1) == s.reshape(z1 - z0, -1).max(axis=1)
        samples.append(s.ravel()[(-z0 * ny * nx) % stride::stride])  # the same voxels for any block_z
    return lo, hi, bad, samples, flat


class _Filled:
    """A volume source whose NaN voxels read as ``fill``."""

    def __init__(self, source, fill: float) -> None:
        self.source, self.fill, self.shape = source, np.float32(fill), source.shape

    def __getitem__(self, key) -> np.ndarray:
        a = np.array(self.source[key], dtype=np.float32)
        a[np.isnan(a)] = self.fill
        return a


def _slabs(nz: int, block: int):
    for z0 in range(0, nz, block):
        yield z0, min(z0 + block, nz)


def _read(source, z0: int, z1: int) -> np.ndarray:
    return np.asarray(source[z0:z1], dtype=np.float32)


def edge_sigma_px(source, mask: np.ndarray, *, n_slices: int = 8, reach: float = 10.0) -> float:
    """How blurred a particle's surface is: the Gaussian σ (px) of its mean edge profile.

    In up to ``n_slices`` slices through the middle 60 % of the rows ``mask`` (z, y, x; the
    particle's envelope) holds, each pixel within ``reach`` px of the outline gets its signed
    distance to it; the median value at each distance is the mean edge profile, scaled from its
    outermost 1.5 px (0) to its innermost (1) (the segmentation's levels, medians of the whole
    envelope and the outside, are pulled together by the blur itself), and a Gaussian-blurred step
    rises from 25 % to 75 % over 1.349 σ. A median over thousands of pixels a distance, so noise
    hardly moves it: blurred by σ 0, 1, 1.5, 2, 3 px, a 64³ ball with noise of 10 % of its level
    reads 0.37, 1.00, 1.40, 1.84, 2.94, a 128³ heating particle 0.37, 1.07, 1.51, 2.00, 2.99 and
    within 0.15 of these with noise of 30 % (the surface's own pixels give the 0.37). In-plane only
    (blur along z alone is not seen). A profile that does not reach 25 % or 75 % within ``reach``
    gives the lower bound 2·reach/1.349.
    """
    held = np.flatnonzero(mask.any(axis=(1, 2)))
    if held.size == 0:
        return math.nan
    a, b = held[0] + 0.2 * (held[-1] - held[0]), held[-1] - 0.2 * (held[-1] - held[0])
    dist, vals = [], []
    for z in np.unique(np.linspace(a, b, n_slices).round().astype(int)):
        m = mask[z]
        if not m.any() or m.all():
            continue
        d = np.where(m, ndi.distance_transform_edt(m) - 0.5, 0.5 - ndi.distance_transform_edt(~m))
        near = np.abs(d) <= reach
        dist.append(d[near])
        vals.append(_read(source, int(z), int(z) + 1)[0][near])
    if not dist:
        return math.nan
    d, v = np.concatenate(dist), np.concatenate(vals)
    bins = np.arange(-reach, reach + 0.25, 0.5)
    which = np.digitize(d, bins)
    centres, profile = [], []
    for i in range(1, len(bins)):
        at = v[which == i]
        if at.size >= 20:
            centres.append(0.5 * (bins[i - 1] + bins[i]))
            profile.append(float(np.median(at)))
    if len(centres) < 8:
        return math.nan
    prof = np.asarray(profile)
    background, solid = float(prof[:3].mean()), float(prof[-3:].mean())
    if not solid > background:
        return math.nan
    f = np.maximum.accumulate((prof - background) / (solid - background))
    if f[0] > 0.25 or f[-1] < 0.75:
        return 2.0 * reach / 1.349
    return float((np.interp(0.75, f, centres) - np.interp(0.25, f, centres)) / 1.349)


def _smoothed_slab(source, nz: int, z0: int, z1: int, sigma: float, median_size: int = 0) -> np.ndarray:
    """Smoothed rows z0:z1, identical to smoothing the whole volume (mode 'nearest')."""
    halo = (int(math.ceil(4.0 * sigma)) if sigma > 0 else 0) + (median_size // 2 if median_size > 1 else 0)
    a0, a1 = max(0, z0 - halo), min(nz, z1 + halo)
    slab = _read(source, a0, a1)
    if median_size > 1:
        slab = ndi.median_filter(slab, size=median_size, mode="nearest")
    if sigma > 0:
        slab = ndi.gaussian_filter(slab, sigma, mode="nearest", truncate=4.0)
    return slab[z0 - a0: z0 - a0 + (z1 - z0)]


def _cube_dilate(b: np.ndarray, r: int, outside: int) -> np.ndarray:
    """Dilation by a (2r+1)³ cube (three 1-D maximum filters); ``outside`` = value beyond edges."""
    u = b.view(np.uint8)
    for ax in range(b.ndim):
        u = ndi.maximum_filter1d(u, 2 * r + 1, axis=ax, mode="constant", cval=outside)
    return u.view(bool)


def _dilate(b: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by ``ball(r)``; only the band within a cube of the mask is computed."""
    band = _cube_dilate(b, r, 0) & ~b
    if not band.any():
        return b.copy()
    return ndi.binary_dilation(b, ball(r), mask=band)


def _erode(b: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion by ``ball(r)``, outside the array = background."""
    band = _cube_dilate(~b, r, 1) & b
    if not band.any():
        return b.copy()
    return ndi.binary_erosion(b, ball(r), mask=band, border_value=0)


def _blockwise_morph(mask: np.ndarray, radius: int, block: int, kind: str) -> np.ndarray:
    """Binary closing (``kind="closing"``) or opening (``"opening"``) with ``ball(radius)``,
    slab by slab. Beyond y and x the volume counts as background, beyond its first and last
    rows as those rows repeated (a particle the reconstructed rows cut off has no surface
    there, so a crack through the end row is closed like one inside). Equal to the
    operation on the mask padded by ``2 radius`` (zeros in y and x, edge rows in z; tested)."""
    if radius <= 0:
        return mask.copy()
    nz, ny, nx = mask.shape
    r = int(radius)
    first, second = (_dilate, _erode) if kind == "closing" else (_erode, _dilate)
    out = np.empty_like(mask)
    for z0, z1 in _slabs(nz, block):
        # rows z0:z1 need the input within 2r; the y/x pad of r holds the dilated overflow
        slab = np.zeros((z1 - z0 + 4 * r, ny + 2 * r, nx + 2 * r), dtype=bool)
        slab[:, r:r + ny, r:r + nx] = mask[np.clip(np.arange(z0 - 2 * r, z1 + 2 * r), 0, nz - 1)]
        if not slab.any():
            out[z0:z1] = False
            continue
        slab = second(first(slab, r), r)
        out[z0:z1] = slab[2 * r: 2 * r + (z1 - z0), r:r + ny, r:r + nx]
    return out


def _line_closings(mask: np.ndarray, radius: int, block: int) -> np.ndarray:
    """``mask`` with what closings by a line of ``2 radius + 1`` voxels along z, y and x add:
    gaps bounded on both sides along an axis. A ball closing leaves a groove where a crack
    meets a curved surface (the two faces' rounded edges meet in a V), so the crack's mouth
    fell outside the envelope; the line closings fill it. Beyond the first and last rows the
    volume counts as those rows repeated (the mask padded so, before the closing: padding each
    filter's own input instead filled the first and last rows of a particle that narrows toward
    them out to the disc ``radius`` rows in, 5 % of its volume as cracks); beyond y and x as
    background (there a line closing only adds less). Slab by slab with a halo of ``2 radius``
    rows: equal to the whole volume."""
    if radius <= 0:
        return mask.copy()
    nz = mask.shape[0]
    size, halo = 2 * int(radius) + 1, 2 * int(radius)
    out = mask.copy()
    for z0, z1 in _slabs(nz, block):
        u = mask[np.clip(np.arange(z0 - halo, z1 + halo), 0, nz - 1)].view(np.uint8)  # edge rows repeated
        for ax in range(3):
            closed = ndi.minimum_filter1d(ndi.maximum_filter1d(u, size, axis=ax, mode="constant", cval=0),
                                          size, axis=ax, mode="constant", cval=0)
            out[z0:z1] |= closed[halo: halo + (z1 - z0)].view(bool)
    return out


def _blockwise_closing(mask: np.ndarray, radius: int, block: int) -> np.ndarray:
    return _blockwise_morph(mask, radius, block, "closing")


def _label_counts(labels: np.ndarray, n: int, block: int, where: np.ndarray | None = None) -> np.ndarray:
    """Voxels per label 1..n (index 0 unused), optionally only where ``where`` is True;
    slab by slab, over the labelled voxels only (no full-size int64 temporary)."""
    counts = np.zeros(n + 1, dtype=np.int64)
    for z0, z1 in _slabs(labels.shape[0], block):
        lab = labels[z0:z1]
        sel = lab > 0
        if where is not None:
            sel &= where[z0:z1]
        counts += np.bincount(lab[sel], minlength=n + 1)
    counts[0] = 0
    return counts


def _lookup(table: np.ndarray, labels: np.ndarray, block: int) -> np.ndarray:
    """``table[labels]`` slab by slab."""
    out = np.empty(labels.shape, dtype=table.dtype)
    for z0, z1 in _slabs(labels.shape[0], block):
        out[z0:z1] = table[labels[z0:z1]]
    return out


def _shift_and(b: np.ndarray) -> np.ndarray:
    """One erosion step with the 6-neighbour cross; outside the array = background."""
    out = b.copy()
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        out[tuple(hi)] &= b[tuple(lo)]
        out[tuple(lo)] &= b[tuple(hi)]
        edge = [slice(None)] * 3
        for e in (0, -1):
            edge[ax] = e
            out[tuple(edge)] = False
    return out


def _shift_or(b: np.ndarray) -> np.ndarray:
    """One dilation step with the 6-neighbour cross."""
    out = b.copy()
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        out[tuple(hi)] |= b[tuple(lo)]
        out[tuple(lo)] |= b[tuple(hi)]
    return out


def _eroded_slab(mask: np.ndarray, z0: int, z1: int, margin: int) -> np.ndarray:
    """Rows z0:z1 of the mask eroded ``margin`` times by the 6-neighbour cross (voxels
    more than ``margin`` steps inside). Beyond y and x the volume is background; beyond its
    first and last rows it repeats them: a particle that the reconstructed rows cut off
    has no surface there (and one inside the rows has no voxels in its end rows)."""
    if margin <= 0:
        return mask[z0:z1]
    nz = mask.shape[0]
    er = mask[np.clip(np.arange(z0 - margin, z1 + margin), 0, nz - 1)]
    for _ in range(margin):
        er = _shift_and(er)
    return er[margin: margin + (z1 - z0)]


def _particle_pieces(mask: np.ndarray, gap: int, min_fraction: float, block: int) -> tuple[np.ndarray, int]:
    """The largest connected component of ``mask`` and the pieces linked to it, and how many
    other particles (components of at least :data:`OTHER_PARTICLE_SHARE` of the largest's
    voxels that are not linked to it) are left out.

    A piece (connected component of at least ``min_fraction`` × the largest's voxels)
    belongs to the particle when a chain of gaps of at most ``gap`` voxels (cube metric)
    joins it to the largest component. ``gap=0``: the largest component only.
    """
    labels = np.empty(mask.shape, dtype=np.int32)
    n = ndi.label(mask, output=labels)
    if n == 0:
        return mask, 0
    counts = _label_counts(labels, n, block)
    largest = 1 + int(np.argmax(counts[1:]))
    keep = counts >= max(1.0, min_fraction * counts[largest])
    keep[0], keep[largest] = False, True
    big = np.flatnonzero(counts >= OTHER_PARTICLE_SHARE * counts[largest])
    big = big[(big != 0) & (big != largest)]
    if int(keep.sum()) == 1 or gap <= 0:
        return _lookup(np.arange(n + 1) == largest, labels, block), int(big.size)
    # one voxel of each big piece, to tell after the regrouping whether it joined the particle
    big_at = [tuple(int(c) for c in pos) for pos in ndi.minimum_position(labels, labels, big)] if big.size else []
    for z0, z1 in _slabs(mask.shape[0], block):  # one voxel of the largest piece
        hit = np.flatnonzero(labels[z0:z1] == largest)
        if hit.size:
            seed = np.unravel_index(z0 * mask.shape[1] * mask.shape[2] + int(hit[0]), mask.shape)
            break
    pieces = _lookup(keep, labels, block)
    r = (int(gap) + 1) // 2
    grown = np.empty(mask.shape, dtype=bool)
    nz = mask.shape[0]
    for z0, z1 in _slabs(nz, block):  # cube dilation by r, slab by slab with a halo of r
        a0, a1 = max(0, z0 - r), min(nz, z1 + r)
        grown[z0:z1] = _cube_dilate(pieces[a0:a1], r, 0)[z0 - a0: z0 - a0 + (z1 - z0)]
    n_grown = ndi.label(grown, output=labels)
    del grown
    group = np.zeros(n_grown + 1, dtype=bool)
    group[labels[seed]] = True
    out = _lookup(group, labels, block)
    out &= pieces
    # the other particles: the groups (pieces within gap of each other: a particle its cracks
    # split) that hold a big piece, not the pieces
    return out, len({int(labels[pos]) for pos in big_at if not out[pos]})


def _fill_holes(mask: np.ndarray, block: int) -> np.ndarray:
    """Fill every background region (6-connected) that does not touch the volume's y or x
    border. Beyond the first and last rows the volume counts as those rows repeated, as in the
    closing: a crack that the reconstructed rows cut through is a hole of the particle, not
    its outside (a particle inside the rows has air in its end rows, which reaches the sides)."""
    labels = np.empty(mask.shape, dtype=np.int32)
    n = ndi.label(~mask, output=labels)
    if n == 0:
        return mask
    inside = np.ones(n + 1, dtype=bool)  # label 0 = the mask itself: stays inside
    for face in (labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]):
        inside[np.unique(face)] = False
    inside[0] = True
    return _lookup(inside, labels, block)


def _shape(coords: np.ndarray) -> tuple[float, float, float]:
    """(aspect, fill, length) of a voxel set from its second moments.

    aspect = sqrt(λ_min / λ_max); fill = n / volume of the uniform ellipsoid with the same
    second moments (semi-axes sqrt(5 λ)); length = that ellipsoid's longest axis (voxels). A
    solid ball or ellipsoid has fill ≈ 1; a thin curved shell much less. Each voxel is a unit
    cube (variance 1/12 added per axis).
    """
    n = coords.shape[0]
    if n < 2:
        return 1.0, 1.0, 1.0
    cov = np.cov(coords.T.astype(np.float64), bias=True) + np.eye(3) / 12.0
    lam = np.clip(np.linalg.eigvalsh(cov), 1e-12, None)
    aspect = float(np.sqrt(lam[0] / lam[-1]))
    ell = 4.0 / 3.0 * math.pi * float(np.prod(np.sqrt(5.0 * lam)))
    return aspect, float(n / ell), 2.0 * math.sqrt(5.0 * float(lam[-1]))


#: bounding boxes above this many voxels are pooled before their distance transform (it takes
#: ~20 bytes per voxel): 2^23 voxels, ~170 MB
THICKNESS_MAX_VOXELS = 1 << 23
#: a component at least ``pore_min_thickness`` thick is a pore from this aspect up (a hollow
#: particle's core: 0.33 on a blind probe's particles; a crack opened 10-12 voxels wide over a
#: 30-50 voxel disc reads 0.24-0.33, which is why the thickness must be larger than such cracks)
THICK_PORE_MIN_ASPECT = 0.25


def _thickness(box: np.ndarray) -> float:
    """Diameter (voxels) of the largest ball inside a component: 2 × its largest distance to
    the outside − 1 (a one-voxel sheet: 1; a ball of radius r: ~2r + 1). ``box``: bool
    (z, y, x), the component in its bounding box. Boxes over :data:`THICKNESS_MAX_VOXELS`
    are pooled by an integer factor k first (read at most k voxels thicker)."""
    k = 1
    while box.size > THICKNESS_MAX_VOXELS * k ** 3:
        k += 1
    if k > 1:
        pad = [(0, -n % k) for n in box.shape]
        b = np.pad(box, pad)
        box = b.reshape(b.shape[0] // k, k, b.shape[1] // k, k, b.shape[2] // k, k).any(axis=(1, 3, 5))
    depth = ndi.distance_transform_edt(np.pad(box, 1))
    return float(k * (2.0 * depth.max() - 1.0))


#: a component through every row is a pore only where its sections by the slices are discs:
#: medians of their aspect and fill at least these (a disc: ~1 and ~1; a crack branch the slab
#: cuts short: 0.58 and 0.60 on a blind probe's particle, which the 3D measures called round)
THROUGH_PORE_ASPECT = 0.7
THROUGH_PORE_FILL = 0.8


def _section_shape(coords: np.ndarray, rows: int) -> tuple[float, float, bool]:
    """(aspect, fill, wide) of a voxel set's sections by the slices (z, y, x): the medians over
    its rows of :func:`_shape`'s measures in 2D (fill against the uniform ellipse, semi-axes
    sqrt(4 λ)), and whether the median section's equivalent diameter is at least ``rows``."""
    shapes = []
    for z in np.unique(coords[:, 0]):
        yx = coords[coords[:, 0] == z, 1:]
        n = yx.shape[0]
        if n < 2:
            shapes.append((1.0, 1.0, n))
            continue
        cov = np.cov(yx.T.astype(np.float64), bias=True) + np.eye(2) / 12.0
        lam = np.clip(np.linalg.eigvalsh(cov), 1e-12, None)
        shapes.append((float(np.sqrt(lam[0] / lam[-1])), n / (math.pi * 4.0 * math.sqrt(float(lam[0] * lam[1]))), n))
    aspect, fill, area = (float(np.median(v)) for v in zip(*shapes))
    return aspect, fill, 2.0 * math.sqrt(area / math.pi) >= rows


# ----------------------------------------------------------------------------- main
def segment_volume(
    source: VolumeSource | np.ndarray,
    params: SegmentationParams | dict | None = None,
    return_masks: bool = False,
) -> SegmentationResult:
    """Segment the particle, its cracks and its pores.

    Parameters
    ----------
    source : (z, y, x) volume, attenuation per pixel — a numpy array, a zarr array, or any
        object with ``shape`` whose ``source[z0:z1]`` gives rows z0:z1 (read slab by slab).
    params : :class:`SegmentationParams` (or a dict of its fields); defaults when ``None``.
    return_masks : also return the (z, y, x) bool masks ``envelope``, ``cracks``, ``pores``.

    Returns
    -------
    SegmentationResult — ``status`` is ``"ok"``, ``"no particle found"``,
    ``"no data (volume is constant)"``, ``"not reconstructed (no data)"`` (all NaN: the
    store's fill value, a time point not written yet), ``"incomplete volume: NaN or
    infinite values (…% of voxels)"``, ``"incomplete volume: empty slices inside the particle:
    …"`` (slices of one value between its first and last) or ``"the particle fills the field (…)"`` (no
    background: an inverted contrast?); the counts are zero when it is not ``"ok"``.
    ``other_particles`` counts the separate particles (≥ 5 % of its volume) left out.
    """
    p = params if isinstance(params, SegmentationParams) else SegmentationParams(**(params or {}))
    shape = tuple(int(s) for s in source.shape)
    if len(shape) != 3:
        raise ValueError(f"segment_volume needs a (z, y, x) volume, got shape {shape}")
    nz, ny, nx = shape
    block = max(1, int(p.block_z))

    # pass 1: value range. The quantisation range is the 0.005th..99.995th percentile of a
    # strided sample, so that a few extreme voxels (streaks, hot pixels) do not squeeze the
    # particle into a handful of levels; smoothed values outside it are clipped to its ends.
    lo, hi, bad, samples, flat = _value_range(source, block)
    if 0 < bad < nz * ny * nx and (fill := _fill_outside_circle(source, block)) is not None:
        source = _Filled(source, fill)  # NaN outside the reconstruction circle (tomopy's, astra's mask): air
        lo, hi, bad, samples, flat = _value_range(source, block)
    if bad == nz * ny * nx:
        return SegmentationResult(status=NOT_RECONSTRUCTED)
    if bad:
        return SegmentationResult(status=f"{NON_FINITE} ({100.0 * bad / (nz * ny * nx):.3g}% of voxels)")
    if not hi > lo:
        return SegmentationResult(status=NO_DATA)
    r_lo, r_hi = (float(v) for v in np.percentile(np.concatenate(samples), [0.005, 99.995]))
    del samples
    if r_hi > r_lo:
        lo, hi = r_lo, r_hi
    # the smoothed volumes are kept quantised to 16 bits over [lo, hi] (2 bytes/voxel): one
    # filtering pass each, and exact histograms by bincount
    scale = (LEVELS - 1) / (hi - lo)
    centers = lo + np.arange(LEVELS) / scale
    edges = np.concatenate([centers - 0.5 / scale, [centers[-1] + 0.5 / scale]])

    # pass 2: envelope smoothing -> histogram -> Otsu, and the contrast of the split
    q = np.empty(shape, dtype=np.uint16)
    hist = np.zeros(LEVELS, dtype=np.int64)
    for z0, z1 in _slabs(nz, block):
        q[z0:z1] = _quantise(_smoothed_slab(source, nz, z0, z1, p.sigma, p.median_size), lo, scale)
        hist += np.bincount(q[z0:z1].ravel(), minlength=LEVELS)
    thr = p.envelope_threshold if p.envelope_threshold is not None else otsu_from_histogram(hist, centers)
    (m0, v0), (m1, v1) = _hist_class_stats(hist, centers, thr)
    noise = math.sqrt(0.5 * ((v0 if v0 == v0 else 0.0) + (v1 if v1 == v1 else 0.0)))
    if not (m1 == m1 and m0 == m0) or (m1 - m0) < p.min_contrast * max(noise, 1e-30):
        return SegmentationResult(status=NO_PARTICLE, envelope_threshold=thr)

    # pass 3: envelope mask
    mask = np.empty(shape, dtype=bool)
    q_thr = (thr - lo) * scale
    for z0, z1 in _slabs(nz, block):
        mask[z0:z1] = q[z0:z1] > q_thr
    del q
    if not mask.any():
        return SegmentationResult(status=NO_PARTICLE, envelope_threshold=thr)
    held = np.flatnonzero(mask.any(axis=(1, 2)))
    if (empty := np.flatnonzero(flat[held[0]:held[-1] + 1]) + held[0]).size:  # blind probe P: counted as a crack
        rows = ", ".join(str(int(z)) for z in empty[:8]) + (" …" if empty.size > 8 else "")
        return SegmentationResult(status=f"{EMPTY_SLICES}: {rows} (detector rows that measured nothing?)",
                                  envelope_threshold=thr)
    mask, others = _particle_pieces(mask, p.piece_gap, p.min_piece_fraction, block)
    mask = _blockwise_closing(mask, p.closing_radius, block)
    mask = _line_closings(mask, p.closing_radius, block)
    mask = _fill_holes(mask, block)
    particle = int(np.count_nonzero(mask))
    if particle < p.min_particle_voxels:
        return SegmentationResult(status=NO_PARTICLE, envelope_threshold=thr)
    if particle >= FILLS_FIELD_SHARE * mask.size:
        return SegmentationResult(
            status=f"{FILLS_FIELD} ({100.0 * particle / mask.size:.1f} % of voxels): no background to "
                   "measure cracks against; is the contrast inverted (air brighter than the sample)?",
            envelope_threshold=thr)

    # pass 4: defect smoothing; solid and background levels = medians inside / outside
    q = np.empty(shape, dtype=np.uint16)
    h_in = np.zeros(LEVELS, dtype=np.int64)
    h_out = np.zeros(LEVELS, dtype=np.int64)
    for z0, z1 in _slabs(nz, block):
        qs = q[z0:z1]
        qs[...] = _quantise(_smoothed_slab(source, nz, z0, z1, p.defect_sigma), lo, scale)
        env = mask[z0:z1]
        h_in += np.bincount(qs[env], minlength=LEVELS)
        h_out += np.bincount(qs[~env], minlength=LEVELS)
    solid = _hist_shorth(h_in, edges) if p.solid_estimate == "shorth" else _hist_median(h_in, edges)
    background = _hist_median(h_out, edges) if h_out.any() else float(lo)
    if not solid > background:
        return SegmentationResult(status=NO_PARTICLE, envelope_threshold=thr)
    dthr = (p.defect_threshold if p.defect_threshold is not None
            else background + p.defect_fraction * (solid - background))

    # pass 5: defect candidates inside the envelope
    defects = _dark_inside(q, mask, (dthr - lo) * scale, block, np.empty(shape, dtype=bool))
    if p.defect_threshold is None and p.solid_far[0] < 1.0:
        share = float(np.count_nonzero(defects)) / particle
        lo_s, hi_s = p.solid_far
        w = min(1.0, max(0.0, (share - lo_s) / max(hi_s - lo_s, 1e-12)))
        if w > 0.0:
            far_solid = _far_median(q, defects, mask, p.solid_far_gap, block, edges)
            if far_solid == far_solid:
                solid = solid + w * (max(far_solid, solid) - solid)
                dthr = background + p.defect_fraction * (solid - background)
                _dark_inside(q, mask, (dthr - lo) * scale, block, defects)
    thin = 0
    if p.thin_cracks:
        thin = _add_thin_cracks(q, mask, defects, p.thin_depth * (solid - background) * scale, block,
                                2 * p.min_defect_voxels)
    if p.valley_fraction is not None:
        _add_valleys(q, mask, p.valley_fraction * (solid - background) * scale, p.valley_radius, block, defects)
    void = (_void_level(q, defects, background, solid, h_out, edges, block) if p.crack_volume == "partial_volume"
            else background)
    if p.crack_volume != "partial_volume":
        del q

    # round pores first: the parts of the defects a ball of pore_min_radius fits in (thin
    # cracks vanish in this opening), kept when compact; then everything else, by shape
    conn = ndi.generate_binary_structure(3, 3)
    labels = np.empty(shape, dtype=np.int32)
    comps: list[dict] = []
    pores = np.zeros(shape, dtype=bool)
    if p.pore_min_radius > 0:
        thick = _blockwise_morph(defects, p.pore_min_radius, block, "opening")
        n = ndi.label(thick, structure=conn, output=labels)
        del thick
        # a large void's core, without the cracks wider than that ball which run into it
        _trim_to_cores(labels, n, np.arange(1, n + 1), p.pore_min_radius, block)
        is_pore = _classify(labels, n, block, p, comps, *_depth_counts(labels, n, block, mask, p.boundary_margin),
                            only="pore")
        if is_pore.any():
            # a pore = its core and the rim the opening shaved off (one step), slab by slab
            for z0, z1 in _slabs(nz, block):
                a0, a1 = max(0, z0 - 1), min(nz, z1 + 1)
                grown = _shift_or(is_pore[labels[a0:a1]])[z0 - a0: z0 - a0 + (z1 - z0)]
                pores[z0:z1] = grown & defects[z0:z1]
                defects[z0:z1] &= ~grown
    n = ndi.label(defects, structure=conn, output=labels)
    del defects
    counts, deep = _depth_counts(labels, n, block, mask, p.boundary_margin)
    kind_of = _classify(labels, n, block, p, comps, counts, deep)
    # the specks dropped as noise: too few deep voxels, and none near the surface
    speck = (deep < p.min_defect_voxels) & (deep == counts)
    speck[0] = False
    crack_vox = int(counts[kind_of == 1].sum())
    pore_vox = int(np.count_nonzero(pores)) + int(counts[kind_of == 2].sum())
    n_cracks = int((kind_of == 1).sum())
    n_pores = sum(1 for c in comps if c["kind"] == "pore")
    res = SegmentationResult(
        status=OK, particle_volume_vox=particle, crack_volume_vox=crack_vox, pore_volume_vox=pore_vox,
        n_cracks=n_cracks, n_pores=n_pores, other_particles=others,
        envelope_threshold=float(thr), defect_threshold=float(dthr),
        solid_level=float(solid), background_level=float(background), components=comps,
        crack_voxels_thresholded=crack_vox, speck_voxels=int(counts[speck].sum()), thin_crack_voxels=thin,
        ring_voxels=sum(c["voxels"] for c in comps if c["kind"] == "ring"),
        edge_sigma_px=edge_sigma_px(source, mask),
    )
    cracks = None
    if return_masks or p.crack_volume == "partial_volume":
        cracks = _lookup(kind_of == 1, labels, block)
        if (kind_of == 2).any():
            pores |= _lookup(kind_of == 2, labels, block)
    del labels
    if p.crack_volume == "partial_volume" and n_cracks:
        res.crack_volume_vox = _partial_volume(q, lo, scale, solid, void, cracks, pores, mask,
                                               p.pv_margin, block,
                                               p.pv_window if p.pv_reference == "local" else 0)
    if return_masks:
        res.envelope, res.cracks, res.pores = mask, cracks, pores
    return res


def _dark_inside(q: np.ndarray, mask: np.ndarray, q_thr: float, block: int, out: np.ndarray) -> np.ndarray:
    """``out`` = the voxels of ``mask`` whose quantised value ``q`` is below ``q_thr``, slab by slab."""
    for z0, z1 in _slabs(q.shape[0], block):
        out[z0:z1] = (q[z0:z1] < q_thr) & mask[z0:z1]
    return out


def _add_valleys(q: np.ndarray, mask: np.ndarray, depth_q: float, radius: int, block: int,
                 out: np.ndarray) -> np.ndarray:
    """``out`` |= the voxels of ``mask`` at least ``depth_q`` (quantised levels) below the grey
    closing of ``q`` by ``ball(radius)`` (a black top-hat: narrow dark valleys, however grey),
    slab by slab with a halo of ``radius`` rows (beyond the ends the rows repeat)."""
    nz = q.shape[0]
    fp = ball(radius)
    for z0, z1 in _slabs(nz, block):
        rows = np.clip(np.arange(z0 - 2 * radius, z1 + 2 * radius), 0, nz - 1)
        slab = q[rows].astype(np.int32)
        closed = ndi.grey_closing(slab, footprint=fp, mode="nearest")[2 * radius: 2 * radius + (z1 - z0)]
        out[z0:z1] |= ((closed - slab[2 * radius: 2 * radius + (z1 - z0)]) >= depth_q) & mask[z0:z1]
    return out


#: thin cracks: the ball radius of the closing (and opening) that finds valleys (and ridges), the
#: steps they keep from the thresholded defects and from the envelope's surface
THIN_RADIUS = 2
THIN_GAP = 2
#: a valley is a crack where it holds more than this many times the voxels of the largest ridge
#: (and than twice min_defect_voxels): in pure noise the largest valley reached 1.4 times the
#: largest ridge (64³ particles, 8 seeds each of white and correlated noise), thin cracks 2-20 times
THIN_NOISE_FACTOR = 2.0


def _add_thin_cracks(q: np.ndarray, mask: np.ndarray, defects: np.ndarray, depth_q: float, block: int,
                     least: int) -> int:
    """Add to ``defects`` the thin cracks the threshold missed; return their voxels.

    Candidates are the voxels at least ``depth_q`` (quantised levels) below the grey closing of
    ``q`` by ``ball(THIN_RADIUS)`` (narrow dark valleys, however grey), more than THIN_GAP steps
    from any defect and from the envelope's surface. Noise makes such valleys too, and just as
    many bright ridges of the same depth (``q`` above its grey opening): so a valley component
    (26-connected) is a crack only where it holds more voxels than the largest ridge component,
    which is the volume's own measure of what its noise, correlated or not, can make
    (:data:`THIN_NOISE_FACTOR` times it, and more than ``least`` voxels). A valley
    that runs around the volume's axis (in-plane radii from the slice centre spread less than
    1 voxel and less than 0.7 of its spread across its best line: a ring artifact) is left out.
    Slab by slab (halo of 2 THIN_RADIUS rows); labels one int32 image."""
    nz = q.shape[0]
    fp = ball(THIN_RADIUS)
    h = 2 * THIN_RADIUS
    near = _grown(defects, THIN_GAP)

    def found(kind: str) -> np.ndarray:  # the valleys ("dark") or the ridges ("bright") of depth_q
        out = np.empty(q.shape, dtype=bool)
        for z0, z1 in _slabs(nz, block):
            rows = np.clip(np.arange(z0 - h, z1 + h), 0, nz - 1)
            slab = q[rows].astype(np.int32)
            mid = slice(h, h + (z1 - z0))
            depth = (ndi.grey_closing(slab, footprint=fp, mode="nearest")[mid] - slab[mid] if kind == "dark"
                     else slab[mid] - ndi.grey_opening(slab, footprint=fp, mode="nearest")[mid])
            out[z0:z1] = (depth >= depth_q) & _eroded_slab(mask, z0, z1, THIN_GAP) & ~near[z0:z1]
        return out

    conn = ndi.generate_binary_structure(3, 3)
    labels = np.empty(q.shape, dtype=np.int32)
    n = ndi.label(found("bright"), structure=conn, output=labels)  # one mask at a time: memory
    noise_most = int(_label_counts(labels, n, block)[1:].max()) if n else 0
    n = ndi.label(found("dark"), structure=conn, output=labels)
    del near
    if not n:
        return 0
    sizes = _label_counts(labels, n, block)
    wanted = np.zeros(n + 1, dtype=bool)
    wanted[1:] = sizes[1:] > max(THIN_NOISE_FACTOR * noise_most, least)
    if not wanted.any():
        return 0
    objects = ndi.find_objects(labels)
    for k in np.flatnonzero(wanted):
        box = objects[k - 1]
        if _is_ring(np.argwhere(labels[box] == k) + [b.start for b in box], q.shape):
            wanted[k] = False
    added = 0
    for z0, z1 in _slabs(nz, block):
        new = wanted[labels[z0:z1]]
        defects[z0:z1] |= new
        added += int(np.count_nonzero(new))
    return added


def _is_ring(coords: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether a component (its voxels' (z, y, x) ``coords`` in a volume of ``shape``) runs around
    the volume's axis, as a ring artifact does: its in-plane radii from the slices' centre
    spread less than 1 voxel and less than 0.7 of its spread across the line that fits its
    (y, x) best (a flat crack's radii spread more than it is thick; an arc's less than its sagitta)."""
    if len(coords) < 3:
        return False
    y = coords[:, 1] - (shape[1] - 1) / 2.0
    x = coords[:, 2] - (shape[2] - 1) / 2.0
    across = math.sqrt(max(float(np.linalg.eigvalsh(np.cov(np.vstack([y, x])))[0]), 0.0))
    return float(np.hypot(y, x).std()) < min(1.0, 0.7 * across)


def _grown(b: np.ndarray, steps: int) -> np.ndarray:
    """``b`` dilated by ``steps`` steps of the 6-neighbour cross (``b`` itself for 0)."""
    for _ in range(steps):
        b = _shift_or(b)
    return b


def _far_median(q: np.ndarray, defects: np.ndarray, envelope: np.ndarray, gap: int, block: int,
                edges: np.ndarray) -> float:
    """Median of the quantised smoothed values ``q`` over the envelope voxels more than ``gap``
    6-neighbour steps from any defect and from the envelope's surface; NaN when none."""
    near = _grown(defects, gap)
    h = np.zeros(edges.size - 1, dtype=np.int64)
    for z0, z1 in _slabs(q.shape[0], block):
        keep = _eroded_slab(envelope, z0, z1, gap) & ~near[z0:z1]
        h += np.bincount(q[z0:z1][keep], minlength=h.size)
    return _hist_median(h, edges) if h.any() else math.nan


def _void_level(q: np.ndarray, defects: np.ndarray, background: float, solid: float, outside: np.ndarray,
                edges: np.ndarray, block: int) -> float:
    """The level an empty crack holds, for the partial-volume sum: ``background`` (the medium
    outside the particle), or lower where the defects' darkest values lie clearly below the
    outside's darkest (each their :data:`VOID_QUANTILE`; ``outside``: the histogram of the
    values outside the particle), by that difference (:data:`VOID_GAP`; noise moves both
    quantiles alike): a particle in a binder or electrolyte whose cracks are open (blind probe
    AD: a binder at 25 % and 40 % of the solid level read 7.41 % and 9.20 % cracks for 5.88, each
    empty crack voxel counted 1/(1 - b) times). Cracks filled with the medium keep ``background``."""
    counts = np.zeros(LEVELS, dtype=np.int64)
    for z0, z1 in _slabs(q.shape[0], block):
        counts += np.bincount(q[z0:z1][defects[z0:z1]], minlength=LEVELS)
    if counts.sum() < VOID_MIN_VOXELS or outside.sum() < VOID_MIN_VOXELS:
        return background
    below = _hist_quantile(outside, edges, VOID_QUANTILE) - _hist_quantile(counts, edges, VOID_QUANTILE)
    return background - below if below > VOID_GAP * (solid - background) else background


def _partial_volume(q: np.ndarray, lo: float, scale: float, solid: float, background: float,
                    cracks: np.ndarray, pores: np.ndarray, envelope: np.ndarray, margin: int,
                    block: int, window: int = 0) -> int:
    """Crack volume that counts partly-dark voxels: Σ (solid − v) / (solid − background) over the
    crack voxels and their neighbours up to ``margin`` steps away (inside the envelope, not
    within ``margin`` of a pore, not on the envelope's surface layer). Blur spreads a thin
    crack's missing attenuation without changing its sum, so this keeps the volume of a crack
    the threshold sees only the core of; noise averages out (the sum is not clipped).
    ``window`` > 0: ``solid`` is, voxel by voxel, the mean of the solid voxels (envelope, more
    than ``margin`` + 1 steps from any crack or pore) in the cube of side 2·window + 1 around
    it, the one level where the cube holds none."""
    near, excl = _grown(cracks, margin), _grown(pores, margin)
    far = ~_grown(cracks | pores, margin + 1) if window else None
    total = 0.0
    nz = q.shape[0]
    for z0, z1 in _slabs(nz, block):
        region = (near[z0:z1] & ~excl[z0:z1] & _eroded_slab(envelope, z0, z1, 1)) | cracks[z0:z1]
        v = lo + q[z0:z1][region].astype(np.float64) / scale
        if not window:
            total += float(np.sum(solid - v)) / float(solid - background)
            continue
        rows = np.clip(np.arange(z0 - window, z1 + window), 0, nz - 1)
        a0, a1 = max(0, z0 - window), min(nz, z1 + window)
        m = _eroded_slab(envelope, a0, a1, 1)[rows - a0] & far[rows]
        vals = np.where(m, lo + q[rows].astype(np.float64) / scale, 0.0)
        size = 2 * window + 1
        num = ndi.uniform_filter(vals, size, mode="constant")[window: window + (z1 - z0)]
        den = ndi.uniform_filter(m.astype(np.float64), size, mode="constant")[window: window + (z1 - z0)]
        local = np.where(den > 0.5 / size ** 3, num / np.maximum(den, 1e-12), solid)
        ref = local[region]
        total += float(np.sum((ref - v) / np.maximum(ref - background, 1e-12 * abs(solid))))
    return int(round(max(total, 0.0)))


def _trim_to_cores(labels: np.ndarray, n: int, pores: np.ndarray, radius: int, block: int) -> None:
    """In place: each of the ``pores`` labels (candidates) keeps only what a ball of a quarter of
    its thickness fits in (an opening by distance transforms), where that ball is larger than the
    first opening's ``radius``: a crack wider than that first ball which runs into a large pore
    or a hollow core goes back to the defects, to be judged a crack, and the core is judged
    alone (a blind probe: cracks 8 voxels wide in a hollow particle read 0.00 % for 3.17; a
    6-voxel crack into a pore of radius 12 made both one crack, or one pore)."""
    for lab, sl in zip(pores, _bounding_boxes(labels, n, pores, block)):
        inside = labels[sl] == lab
        r = int(_thickness(inside) / 4)
        if r <= radius:
            continue
        padded = np.pad(inside, r + 1)
        eroded = ndi.distance_transform_edt(padded) > r
        core = (ndi.distance_transform_edt(~eroded) <= r)[(slice(r + 1, -(r + 1)),) * 3]
        labels[sl][inside & ~core] = 0


def _bounding_boxes(labels: np.ndarray, n: int, wanted: np.ndarray, block: int) -> list[tuple]:
    """Bounding boxes (tuples of slices) of the ``wanted`` labels, slab by slab (scipy's
    find_objects on the whole volume makes a full-size int64 copy)."""
    lo = np.full((len(wanted), 3), np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full((len(wanted), 3), -1, dtype=np.int64)
    if len(wanted):
        for z0, z1 in _slabs(labels.shape[0], block):
            objs = ndi.find_objects(labels[z0:z1], max_label=n)
            for i, lab in enumerate(wanted):
                sl = objs[lab - 1]
                if sl is None:
                    continue
                start = (sl[0].start + z0, sl[1].start, sl[2].start)
                stop = (sl[0].stop + z0, sl[1].stop, sl[2].stop)
                lo[i] = np.minimum(lo[i], start)
                hi[i] = np.maximum(hi[i], stop)
    return [tuple(slice(int(a), int(b)) for a, b in zip(lo[i], hi[i])) for i in range(len(wanted))]


def _depth_counts(labels: np.ndarray, n: int, block: int, envelope: np.ndarray,
                  margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Per label 0..n: its voxels, and those deeper than ``margin`` voxels below the envelope
    surface (all of them where ``margin`` is 0)."""
    counts = _label_counts(labels, n, block)
    if margin <= 0:
        return counts, counts
    deep = np.zeros(n + 1, dtype=np.int64)
    for z0, z1 in _slabs(labels.shape[0], block):
        lab = labels[z0:z1]
        sel = (lab > 0) & _eroded_slab(envelope, z0, z1, margin)
        deep += np.bincount(lab[sel], minlength=n + 1)
    return counts, deep


def _classify(labels: np.ndarray, n: int, block: int, p: SegmentationParams, comps: list[dict],
              counts: np.ndarray, deep: np.ndarray, only: str | None = None) -> np.ndarray:
    """Per label 0..n: 0 = dropped, 1 = crack, 2 = pore. A ring artifact (:func:`_is_ring`) is
    dropped, and its dict says ``"kind": "ring"``.

    A component is dropped when fewer than ``min_defect_voxels`` of its voxels lie deeper
    than ``boundary_margin`` below the envelope surface (``deep``, from :func:`_depth_counts`:
    noise, or surface roughness the closing covered); a crack that breaks the surface keeps
    its mouth. With ``only="pore"``: a bool array, which labels are pores. Appends a dict per
    kept component to ``comps``.
    """
    kind = np.zeros(n + 1, dtype=np.uint8)
    kept = np.flatnonzero(deep >= p.min_defect_voxels)
    kept = kept[kept > 0]
    for lab, sl in zip(kept, _bounding_boxes(labels, n, kept, block)):
        inside = labels[sl] == lab
        coords = np.argwhere(inside)
        aspect, fill, length = _shape(coords)
        # one that runs through every row has a shape the rows cut off (a piece of a crack
        # crossing a thin slab looks compact): judged by its sections by the slices, a pore
        # where they are round and at least as wide as the slab is tall
        through = sl[0].start == 0 and sl[0].stop == labels.shape[0] and labels.shape[0] > 1
        thick = None
        if through:
            s_aspect, s_fill, wide = _section_shape(coords, labels.shape[0])
            pore = s_aspect >= THROUGH_PORE_ASPECT and s_fill >= THROUGH_PORE_FILL and wide
        else:
            # compact by its moments and not thin: a network of gaps (a particle broken along its
            # grains) is compact by its moments, but its thickness is a small part of its length
            # (under half of pore_min_aspect; a digitised small pore reads 0.3-0.8); a void as thick
            # as pore_min_thickness is a pore from THICK_PORE_MIN_ASPECT up (a hollow core)
            thick = _thickness(inside)
            thin = thick / length < p.pore_min_aspect / 2
            pore = fill >= p.pore_min_fill and not thin and (
                aspect >= p.pore_min_aspect
                or (p.pore_min_thickness > 0 and thick >= p.pore_min_thickness and aspect >= THICK_PORE_MIN_ASPECT))
        if only == "pore" and not pore:
            continue
        offset = np.array([s.start for s in sl])
        ring = not pore and _is_ring(coords + offset, labels.shape)  # an artifact, neither crack nor pore
        kind[lab] = 2 if pore else 0 if ring else 1
        comps.append({
            "voxels": int(counts[lab]), "aspect": aspect, "fill": fill, "thickness": thick, "length": None if thick is None else length,
            "kind": "pore" if pore else "ring" if ring else "crack",
            "centroid": tuple(float(c) for c in coords.mean(axis=0) + offset),
        })
    return kind == 2 if only == "pore" else kind
