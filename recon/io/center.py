"""Rotation-axis (center) finding from a half-turn sinogram.

Method (Vo, Drakopoulos, Atwood & Reinhard, Opt. Express 22, 19078 (2014)): a parallel-beam
projection at θ+180° is the projection at θ mirrored about the rotation axis,
``p(θ+π, u) = p(θ, 2c − u)``. For a trial center c the half-turn sinogram followed by its
mirror about c is a full-turn sinogram; only for the true c is it the sinogram of an
object, whose 2-D Fourier transform has (almost) no energy in the double wedge of high
angular / low detector frequencies. The center minimises that energy (mean |FFT| there).
Search: coarse on a sinogram binned to ≤ 256 columns and ≤ 180 angles, then half pixels (whole-pixel shifts
of the mirror), then eighth pixels at full resolution, then a parabola through the best
eighth-pixel metric and its neighbours (sub-pixel).

Robust to a constant background, detector noise and a shifted axis; uses every angle;
needs ≈180° of uniformly spaced angles (non-uniform angles are resampled when given).

Where the given angles leave a wedge of the half turn unseen (a scan of 0–150°) and the sample
stays inside the field at every angle, the mirrored half turn has nothing to mirror; the axis
is then where each projection's centre of mass swings about: in parallel beam it traces
c + r·cos(θ − φ) (Azevedo, Schneberk, Fitch & Martz, IEEE Trans. Nucl. Sci. 37, 1525 (1990)),
a least-squares fit over any arc of angles (≤ 0.4 px from 90° up on 128-px phantoms, where
mirroring was 1–10 px off).
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from recon.errors import FlytomoError
from recon.geometry import ScanGeometry, folded_gaps
from recon.truncation import EDGE_COLUMNS, MIN_EDGE_RATIO


#: rows whose sinogram stands less than this many noise levels out of the air (see
#: :func:`sample_signal`) hold no sample to find the axis from
MIN_SAMPLE_SIGNAL = 10.0


def sample_signal(sino: np.ndarray) -> float:
    """How clearly line integrals (z, angle, col) or (angle, col) show a sample: the largest
    departure of their mean column profile (over rows and angles) from its median, in units
    of that profile's pixel-to-pixel noise (the median step between neighbouring columns,
    which also holds the flat field's fixed pattern). Rows of air score about 3; rows through
    a sample score about its width in pixels or more."""
    s = np.asarray(sino, dtype=np.float64)
    profile = s.reshape(-1, s.shape[-1]).mean(axis=0)
    if profile.size < 3:
        return 0.0
    noise = max(float(np.median(np.abs(np.diff(profile)))) / (0.6745 * np.sqrt(2.0)), 1e-12)
    return float(np.abs(profile - np.median(profile)).max() / noise)


def search_radius_px(n_columns: int, search_radius: float | None = None) -> float:
    """How far from the detector's middle column (n_columns − 1)/2 :func:`find_center`
    searches: ``search_radius`` pixels, default n_columns/4, kept within the detector."""
    radius = n_columns / 4.0 if search_radius is None else float(search_radius)
    return min(max(radius, 1.0), (n_columns - 1) / 2.0 - 1.0)


def find_center(
    sino: np.ndarray,
    angles_deg: np.ndarray | None = None,
    *,
    search_radius: float | None = None,
    object_radius: float = 0.5,
) -> float:
    """Detector column (0-based, pixel i centred at i) onto which the rotation axis projects.

    Parameters
    ----------
    sino : (z, angle, col) or (angle, col) line integrals over a half turn. Rows are
        averaged (the mean of sinograms is the sinogram of the mean slice: same axis).
    angles_deg : (angle,) recorded angles in degrees; default uniform over [0°, 180°).
        Angles beyond the first half turn are dropped; uneven angles are resampled.
    search_radius : search the center within (n_columns − 1)/2 ± this many pixels;
        default n_columns/4.
    object_radius : radius of the object as a fraction of the detector width (sets the
        double wedge); 0.5 = the object may fill the field of view.

    Returns
    -------
    center : float, pixels.
    """
    s = np.asarray(sino, dtype=np.float64)
    if s.ndim == 3:
        s = s.mean(axis=0)
    if s.ndim != 2 or s.shape[0] < 4 or s.shape[1] < 8:
        raise FlytomoError(None, "center finding needs a sinogram (z, angle, col) with ≥4 angles and ≥8 columns, "
                                 f"got shape {np.shape(sino)}")
    if not np.all(np.isfinite(s)):
        raise FlytomoError(None, "center finding needs a finite sinogram (repair NaN/inf first)")
    if angles_deg is not None:
        a = np.asarray(angles_deg, dtype=np.float64)
        if axis_from_centroid(s, a):
            return centroid_center(s, a)
        s = _half_turn(s, a)
    n = s.shape[1]
    mid = (n - 1) / 2.0
    radius = search_radius_px(n, search_radius)

    # 1. coarse: bin columns to ≤ 256 and keep every a-th angle (≤ 180 of them; still a half turn)
    b = max(1, n // 256)
    if b > 1:
        nb = n // b
        a = max(1, s.shape[0] // 180)
        sb = s[: (s.shape[0] // a) * a : a, : nb * b].reshape(-1, nb, b).mean(axis=2)
        # binned pixel j covers columns j*b .. j*b+b-1, centred at j*b + (b-1)/2; half-pixel steps
        lo_b, hi_b = ((mid - radius) - (b - 1) / 2.0) / b, ((mid + radius) - (b - 1) / 2.0) / b
        cand_b = np.arange(np.ceil(2 * lo_b), np.floor(2 * hi_b) + 1) / 2.0
        best = _argmin(sb, cand_b, object_radius) * b + (b - 1) / 2.0
        lo, hi = max(mid - radius, best - b), min(mid + radius, best + b)
    else:
        lo, hi = mid - radius, mid + radius
    # 2. half pixels (whole-pixel shifts of the mirror) at full resolution
    best = _argmin(s, np.arange(np.ceil(2 * lo), np.floor(2 * hi) + 1) / 2.0, object_radius)
    # 3. eighth pixels around it, then a parabola through the minimum and its neighbours
    fine = best + np.arange(-4, 5) / 8.0
    metric, mirror = _Metric(s, object_radius), _Mirror(s, np.abs(2 * fine - (n - 1)).max())
    metrics = np.array([metric(mirror(c)) for c in fine])
    k = int(np.argmin(metrics))
    if 0 < k < fine.size - 1:
        m0, m1, m2 = metrics[k - 1 : k + 2]
        denom = m0 - 2 * m1 + m2
        if denom > 0:
            return float(fine[k] + 0.5 * (m0 - m2) / denom / 8.0)
    return float(fine[k])


def axis_from_centroid(sino: np.ndarray, angles_deg: np.ndarray) -> bool:
    """Whether :func:`find_center` takes the axis of line integrals (z, angle, col) or (angle,
    col) at ``angles_deg`` from the projections' centres of mass (:func:`centroid_center`)
    rather than by mirroring half turns: the angles leave a wedge of the half turn unseen
    (:attr:`~recon.geometry.ScanGeometry.wedge_unseen`) and the sample stays inside the field
    (:func:`inside_field`, looked at only then)."""
    shape = np.shape(sino)
    a = np.asarray(angles_deg, dtype=np.float64)
    return (a.shape == (shape[-2],) and bool(np.all(np.isfinite(a)))
            and ScanGeometry.create(a, shape[-1]).wedge_unseen and inside_field(sino))


def _edge_width(n_columns: int) -> int:
    """Outer columns per side that stand for air: :data:`EDGE_COLUMNS`, at most a quarter of the detector."""
    return min(EDGE_COLUMNS, n_columns // 4)


def _edge_levels(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right): each projection's mean over its outer :func:`_edge_width` columns, (angle,)."""
    k = _edge_width(s.shape[-1])
    return s[..., :k].mean(axis=-1), s[..., -k:].mean(axis=-1)


def inside_field(sino: np.ndarray) -> bool:
    """Whether the sample stays inside the detector at every angle: line integrals (z, angle,
    col) or (angle, col) whose outer columns, levelled by their median and averaged over a
    twentieth of the angles, stay below :data:`recon.truncation.MIN_EDGE_RATIO` of the peak of
    the mean projection, beyond three times their noise (from neighbouring angles' steps)."""
    s = np.asarray(sino, dtype=np.float64)
    s = s.mean(axis=0) if s.ndim == 3 else s
    width = max(1, s.shape[0] // 20)
    edges = _edge_levels(s)
    air = float(np.median(np.concatenate(edges)))
    peak = float((s.mean(axis=0) - air).max())
    if not peak > 0:
        return False
    for edge in edges:
        noise = 1.4826 * float(np.median(np.abs(np.diff(edge)))) / np.sqrt(2.0 * width) if edge.size > 1 else 0.0
        level = np.convolve(edge - np.median(edge), np.ones(width) / width, mode="valid")
        if float(level.max()) > MIN_EDGE_RATIO * peak + 3.0 * noise:
            return False
    return True


def centroid_center(sino: np.ndarray, angles_deg: np.ndarray) -> float:
    """The axis (detector column) from the projections' centres of mass, for a sample inside
    the field: in parallel beam the centroid of the projection at θ is c + A·cos θ + B·sin θ;
    (c, A, B) by least squares over the angles, any arc of them. The projections are first
    levelled by the straight line through their two edges' median levels (air, an offset, a
    tilt of the flat field). sino: (z, angle, col) or (angle, col) line integrals; angles_deg:
    (angle,)."""
    s = np.asarray(sino, dtype=np.float64)
    s = s.mean(axis=0) if s.ndim == 3 else s
    n = s.shape[1]
    left, right = (float(np.median(e)) for e in _edge_levels(s))
    k = _edge_width(n)
    u = np.arange(n, dtype=np.float64)
    p = s - (left + (right - left) * (u - (k - 1) / 2.0) / (n - k))
    mass = p.sum(axis=1)
    ok = mass > 0.5 * np.median(mass)
    if ok.sum() < 3:
        raise FlytomoError(None, "center finding: too few projections show the sample")
    centroid = (p[ok] * u).sum(axis=1) / mass[ok]
    t = np.deg2rad(np.asarray(angles_deg, dtype=np.float64)[ok])
    design = np.stack([np.ones_like(t), np.cos(t), np.sin(t)], axis=1)
    coef, *_ = np.linalg.lstsq(design, centroid, rcond=None)
    return float(coef[0])


def _argmin(s: np.ndarray, candidates: np.ndarray, object_radius: float) -> float:
    if candidates.size == 0:
        return (s.shape[1] - 1) / 2.0
    metric, mirror = _Metric(s, object_radius), _Mirror(s, np.abs(2 * candidates - (s.shape[1] - 1)).max())
    values = [metric(mirror(c)) for c in candidates]
    return float(candidates[int(np.argmin(values))])


class _Metric:
    """Mean |FFT| of the full-turn sinogram [s; mirror] inside the forbidden double wedge.

    A point at radius r traces u = r·cos(θ − φ): at detector frequency ω (cycles/pixel) its
    full-turn spectrum has angular frequencies |k| ≲ 2π·r·|ω| (cycles per turn). Beyond that,
    away from k = 0 and ω = 0 (mean levels), lies the double wedge. Only detector frequencies
    that reach the wedge are transformed along θ, and the top half's transform along u is
    computed once.
    """

    def __init__(self, s: np.ndarray, object_radius: float) -> None:
        n_theta, n = 2 * s.shape[0], s.shape[1]
        k = np.abs(np.fft.fftfreq(n_theta, 1.0 / n_theta))[:, None]
        w = np.fft.rfftfreq(n)[None, :]
        mask = (k > 2 * np.pi * object_radius * n * w) & (k >= 2) & (w > 0)
        self.width = max(2, int(np.nonzero(mask.any(axis=0))[0].max(initial=0)) + 1)
        self.mask = mask[:, : self.width]
        self.top = scipy.fft.rfft(s, axis=1, workers=-1)[:, : self.width]

    def __call__(self, mirrored: np.ndarray) -> float:
        bottom = scipy.fft.rfft(mirrored, axis=1, workers=-1)[:, : self.width]
        spec = np.abs(scipy.fft.fft(np.vstack([self.top, bottom]), axis=0, workers=-1))
        return float(spec[self.mask].mean()) if self.mask.any() else 0.0


class _Mirror:
    """m(θ, u) = s(θ, 2·center − u) for trial centers: the flipped sinogram shifted by
    2·center − (n − 1) columns, exactly by slicing for whole-pixel shifts, by a Fourier shift
    otherwise. Padded with its edge columns beyond the largest shift, so a shift does not
    wrap the object around the detector."""

    def __init__(self, s: np.ndarray, max_shift: float) -> None:
        self.n = s.shape[1]
        self.pad = int(np.ceil(max_shift)) + 2
        width = scipy.fft.next_fast_len(self.n + 2 * self.pad, real=True)
        self.padded = np.pad(s[:, ::-1], ((0, 0), (self.pad, width - self.n - self.pad)), mode="edge")
        self._spectrum: np.ndarray | None = None

    def __call__(self, center: float) -> np.ndarray:
        n, pad = self.n, self.pad
        shift = 2.0 * center - (n - 1)  # flipped(u − shift) = s(2·center − u)
        if shift == round(shift):
            start = pad - int(round(shift))
            return self.padded[:, start : start + n]
        width = self.padded.shape[1]
        if self._spectrum is None:
            self._spectrum = scipy.fft.rfft(self.padded, axis=1, workers=-1)
        ramp = np.exp(-2j * np.pi * np.fft.rfftfreq(width) * shift)
        return scipy.fft.irfft(self._spectrum * ramp, n=width, axis=1, workers=-1)[:, pad : pad + n]


def _half_turn(s: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Keep the first half turn and resample it onto uniform angles θ0 + k·180°/N; a scan
    whose angles wrap past 360° (350°…359°, 0°…169°) is first made contiguous."""
    if angles_deg.shape != (s.shape[0],) or not np.all(np.isfinite(angles_deg)):
        raise FlytomoError(None, f"center finding: {angles_deg.size} angles for {s.shape[0]} projections")
    angles_deg = _contiguous(angles_deg)
    order = np.argsort(angles_deg)
    a, s = angles_deg[order], s[order]
    keep = a < a[0] + 180.0 - 1e-6
    a, s = a[keep], s[keep]
    n_u = a.size
    grid = a[0] + np.arange(n_u) * 180.0 / n_u
    if np.allclose(grid, a, atol=1e-3 * 180.0 / n_u):
        return s
    out = np.empty((n_u, s.shape[1]))
    for j in range(s.shape[1]):
        out[:, j] = np.interp(grid, a, s[:, j])
    return out


def _contiguous(angles_deg: np.ndarray) -> np.ndarray:
    """Angles that wrap past 360° within one turn (350°…359°, 0°…169°) moved by whole turns to
    run on from the end of the widest gap they leave (350°…529°); others as they are."""
    span = float(np.ptp(angles_deg))
    if span >= 360.0:
        return angles_deg
    order, gaps = folded_gaps(angles_deg, period=360.0)
    folded = np.mod(angles_deg, 360.0)
    start = folded[order[(int(np.argmax(gaps)) + 1) % order.size]]
    moved = start + np.mod(folded - start, 360.0)
    return moved if np.ptp(moved) < span - 1e-9 else angles_deg
