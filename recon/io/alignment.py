"""Projection alignment, each opt-in: a tilted rotation axis (``--correct-tilt``) and a
stage's jitter (``--correct-jitter``), measured from the projections and undone before
reconstruction.

**Tilt.** An axis that leans in the detector plane projects onto column c(z) = c0 + s·(z − z0)
instead of one column: a single center is wrong by s·(z − z0) in row z, and points far from the
axis wander up and down with the angle. :func:`estimate_tilt` finds the axis
(:func:`recon.io.center.find_center`) in bands of rows spread over the scan and fits the line;
:func:`read_line_integrals` turns each projection about (c0, z0) so that the axis is one column
(two shears: rows read at z − s·(x − c0), then columns at x + s·(z − z0)).

**Jitter.** In parallel beam every slice's total attenuation is the same at every angle, and
the projections' centre of mass traces a sinusoid in the angle, c + a·cos θ + b·sin θ (the
Helgason–Ludwig conditions of order 0 and 1). A stage that wobbles from one exposure to the
next breaks both: a vertical shift moves the mass-per-row profile up or down, a horizontal
one moves the centre of mass off the sinusoid. :func:`estimate_jitter` measures both from one
pass over the scan; :func:`read_line_integrals` reads rows with the vertical shifts undone
(Lanczos-3 across rows, six taps, so a chunk's rows come out the same however the scan is
chunked); the sideways ones go into the projector (``ScanGeometry.offsets``), which models
each exposure where it was, without resampling. A first-harmonic wobble (the sample's orbit
off the axis) is not jitter: it moves the whole slice and is left alone, as is a constant
vertical offset. The method needs the sample inside the field of view at every angle (outer
columns in air); where its mass changes with the angle, nothing is corrected, with a warning.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from recon.errors import FlytomoError
from recon.io.center import MIN_SAMPLE_SIGNAL, find_center, sample_signal
from recon.io.metadata import assume
from recon.io.preprocess import DEAD_ROW_REACH, Corrections, UnlitRowsError, line_integrals_with_gaps

#: rows per read while measuring
MEASURE_CHUNK_ROWS = 32
#: outer detector columns per side whose mean is a projection row's air level while measuring
#: (a 32nd of the detector, at least 2)
AIR_SHARE = 1 / 32
#: a projection's mass (after its air level) varying by more than this share (s.d. / mean)
#: over the angles says the sample leaves the field of view: no horizontal correction
MAX_MASS_SPREAD = 0.05
#: the outermost 2 columns of one side reading more than this share of the rows' peak
#: attenuation (beyond the other side's) at some angle: the sample reaches past that edge, and
#: its centre of mass cannot tell jitter (:func:`estimate_jitter`; blind probe P's disc 2-16 px
#: past an edge read 0.36-0.76, the raw-defects bench's jittered 48³ scan, its sample at the
#: edges, 0.05)
EDGE_SAMPLE_RATIO = 0.15
#: without --correct-jitter, a centre of mass straying from its sinusoid by more than this
#: (px, RMS) in the rows the axis is found from gets a hint (:func:`jitter_hint`)
HINT_JITTER_PX = 0.3
#: ... and only where the band's mass varies less than this between angles (looser than
#: MAX_MASS_SPREAD: up/down jitter moves mass across a band's edges, 5 % in a 16-row band of
#: a 64-px scan jittered by 1 px)
HINT_MASS_SPREAD = 0.1
#: largest vertical shift searched, as a share of the rows
MAX_VERTICAL_SHARE = 0.25
#: the vertical shifts' expected error (rows) above which none is applied: the profiles'
#: noise over the root of the summed squared slope of the reference profile (the Cramér–Rao
#: bound of a shift; a sample as even from row to row as a tall cylinder gives ~2 rows)
MAX_VERTICAL_ERROR = 0.15


#: tilt: bands of rows the axis is found in, spread evenly over the rows, and their height:
#: at most TILT_BANDS of TILT_BAND_ROWS, fewer where the rows are few, never under
#: TILT_MIN_BAND_ROWS rows (a single row's axis is too noisy) nor fewer than 3 bands
TILT_BANDS = 7
TILT_BAND_ROWS = 16
TILT_MIN_BAND_ROWS = 8
#: the tilt is measured again with what was found undone, at most this many times, until
#: what is left moves the axis less than TILT_CONVERGED_PX over the rows
TILT_ROUNDS = 6
TILT_CONVERGED_PX = 0.05
#: a lean within this many standard errors of the fitted slope is not told from noise: none
#: is corrected (an upright scan of few rows reads up to ±0.4° from band centers' noise)
TILT_SIGNIFICANCE = 3.0
#: a band's center more than this (px) off the fitted line is left out; fewer than 3 bands
#: left, or a line that misses any kept band by more than it: no tilt, with a warning
TILT_RESIDUAL_PX = 0.5
#: without --correct-tilt: the axis's column in two bands of TILT_BAND_ROWS rows at these
#: shares of the rows, and a hint where it moves more than HINT_TILT_PX over all the rows
#: (a band's column under-reads a lean by 20-50 %: 1 px read is 1.3-2 px) and the middle
#: band's column lies on their line within HINT_TILT_MISS (share of the move, at least 0.3 px)
HINT_TILT_SHARES = (0.15, 0.85)
HINT_TILT_PX = 1.0
HINT_TILT_MISS = 0.25


@dataclass(frozen=True)
class Tilt:
    """The rotation axis on the detector: column ``column`` at row ``row``, moving ``slope``
    columns per row (+: further right in lower rows)."""

    slope: float
    row: float
    column: float

    @property
    def degrees(self) -> float:
        return math.degrees(math.atan(self.slope))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Tilt | None":
        return None if d is None else cls(float(d["slope"]), float(d["row"]), float(d["column"]))


def estimate_tilt(reader, *, corrections: Corrections | None = None,
                  rows: tuple[int, int] | None = None) -> Tilt | None:
    """The axis's line on the detector, from its column (:func:`find_center`) in up to
    TILT_BANDS bands of up to TILT_BAND_ROWS rows spread over ``rows`` (default all) that
    show the sample.

    A robust line fit (Theil–Sen; bands more than TILT_RESIDUAL_PX off it are left out), made
    again on the bands with the tilt found so far undone and what is left added, until it
    moves the axis less than TILT_CONVERGED_PX over the rows (at most TILT_ROUNDS times): a
    band's center under-reads the slope of a leaning axis (a fifth of it on a 128-px cracked
    phantom, half on a few balls), so each round takes a fixed share of what is left. None,
    with a warning naming the file, where fewer than 3 bands show the sample, the centers do
    not lie on a line, or the lean is within TILT_SIGNIFICANCE standard errors of the first
    fit's slope (not told from noise).
    """
    n_rows = reader.shape[1]
    z0, z1 = rows or (0, n_rows)
    where = getattr(reader, "path", "scan")
    bands = min(TILT_BANDS, (z1 - z0) // TILT_MIN_BAND_ROWS)
    if bands < 3:
        assume(where, f"tilt: {z1 - z0} rows are too few to find the axis in 3 bands of {TILT_MIN_BAND_ROWS}; "
                      "no tilt is corrected")
        return None
    height = min(TILT_BAND_ROWS, (z1 - z0) // bands)
    starts = sorted({band_start((k + 0.5) * (z1 - z0) / bands, height, (z0, z1)) for k in range(bands)})
    tilt, error = None, 0.0
    row = (n_rows - 1) / 2
    for _ in range(TILT_ROUNDS):
        line = _axis_line(reader, starts, height, corrections, tilt)
        if line is None:
            if tilt is not None:
                break  # the last round's bands lost the line: the tilt found so far stands
            assume(where, f"tilt: the rotation axis was not found on one line in 3 or more of {bands} bands "
                          "of rows; no tilt is corrected")
            return None
        slope, intercept, se = line
        error = error or se  # the first round's: the bands' noise, before any resampling
        tilt = Tilt(slope + (tilt.slope if tilt else 0.0), row, intercept + slope * row)
        if abs(slope) * (z1 - z0) < TILT_CONVERGED_PX:
            break
    if abs(tilt.slope) <= TILT_SIGNIFICANCE * error:
        assume(where, "tilt: the axis's lean is not told from the noise of its column in bands of rows "
                      f"(under {TILT_SIGNIFICANCE:g} standard errors); no tilt is corrected")
        return None
    return tilt


def _axis_line(reader, starts: list[int], height: int, corrections: Corrections | None,
               tilt: Tilt | None) -> tuple[float, float, float] | None:
    """(slope, intercept, the slope's standard error) of the axis column against the row,
    from the bands starting at ``starts`` read with ``tilt`` undone; None where no line fits
    3 or more of them."""
    from scipy.stats import theilslopes

    mids, centers = [], []
    for a in starts:
        center = _band_center(reader, a, height, corrections=corrections, tilt=tilt)
        if center is not None:
            mids.append(a + (height - 1) / 2)
            centers.append(center)
    z, c = np.asarray(mids), np.asarray(centers)
    if z.size < 3:
        return None
    slope, intercept, *_ = theilslopes(c, z)
    keep = np.abs(c - (intercept + slope * z)) <= TILT_RESIDUAL_PX
    if keep.sum() < 3:
        return None
    z, c = z[keep], c[keep]
    slope, intercept = np.polyfit(z, c, 1)
    residual = c - (intercept + slope * z)
    if np.abs(residual).max() > TILT_RESIDUAL_PX:
        return None
    se = np.sqrt(np.sum(residual ** 2) / max(z.size - 2, 1) / np.sum((z - z.mean()) ** 2))
    return float(slope), float(intercept), float(se)


def band_start(offset: float, height: int, rows: tuple[int, int]) -> int:
    """The first row of ``height`` rows centred ``offset`` rows past the first of ``rows`` =
    (z0, z1) (rounded), moved inside them where they would cross their ends (z0 where there
    are fewer rows than ``height``)."""
    z0, z1 = rows
    return min(max(z0, z0 + int(round(offset - height / 2))), max(z0, z1 - height))


def _band_center(reader, a: int, height: int, *, corrections: Corrections | None,
                 jitter: Jitter | None = None, tilt: Tilt | None = None) -> float | None:
    """The axis's column (:func:`find_center`) in rows a:a+height read with ``jitter`` and
    ``tilt`` undone; None where those rows are air or the axis is not found there."""
    sino = read_line_integrals(reader, a, a + height, corrections=corrections, jitter=jitter, tilt=tilt)
    if sample_signal(sino) < MIN_SAMPLE_SIGNAL:
        return None
    try:
        return find_center(sino, reader.angles_deg)
    except FlytomoError:
        return None


def tilt_hint(reader, rows: tuple[int, int], middle: tuple[float, float], *,
              corrections: Corrections | None = None, jitter: Jitter | None = None) -> str | None:
    """A hint naming ``--correct-tilt`` where the axis's column (:func:`find_center`) in two
    bands near the top and the bottom of ``rows`` moves more than HINT_TILT_PX over the rows,
    on one line with ``middle`` = (row, column) of the axis found in the middle band; None
    where the rows are under 4 bands, a band is air or its axis is not found, or the three
    columns do not lie on a line (HINT_TILT_MISS)."""
    z0, z1 = rows
    height = TILT_BAND_ROWS
    if z1 - z0 < 4 * height:
        return None
    zs, cs = [], []
    for share in HINT_TILT_SHARES:
        a = band_start(share * (z1 - z0), height, (z0, z1))
        c = _band_center(reader, a, height, corrections=corrections, jitter=jitter)
        if c is None:
            return None
        zs.append(a + (height - 1) / 2)
        cs.append(c)
    slope = (cs[1] - cs[0]) / (zs[1] - zs[0])
    move = slope * (z1 - z0 - 1)
    miss = abs(middle[1] - (cs[0] + slope * (middle[0] - zs[0])))
    if abs(move) <= HINT_TILT_PX or miss > max(0.3, HINT_TILT_MISS * abs(cs[1] - cs[0])):
        return None
    return (f"the rotation axis's column moves {move:+.1f} px from row {z0} to row {z1 - 1} (found in bands of "
            f"rows; a lean of about {np.degrees(np.arctan(slope)):+.2f}° in the detector plane, or more): "
            "--correct-tilt (config: reconstruction.correct_tilt) finds and undoes it")


@dataclass(frozen=True)
class Jitter:
    """Per-projection displacement of the sample (pixels): ``dy`` rows (+: towards higher
    rows), ``dx`` columns (+: towards higher columns), each of length n_angles; undone by
    reading row z + dy, column x + dx."""

    dy: tuple[float, ...]
    dx: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"dy": list(self.dy), "dx": list(self.dx)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Jitter | None":
        return None if d is None else cls(tuple(map(float, d["dy"])), tuple(map(float, d["dx"])))

    def summary(self) -> str:
        """'rms 0.84 px across, 0.51 px up/down (largest 2.3, 1.6)'."""
        dx, dy = np.asarray(self.dx), np.asarray(self.dy)
        return (f"rms {np.sqrt(np.mean(dx ** 2)):.2f} px across, {np.sqrt(np.mean(dy ** 2)):.2f} px up/down "
                f"(largest {np.abs(dx).max(initial=0):.1f}, {np.abs(dy).max(initial=0):.1f})")


def estimate_jitter(reader, *, corrections: Corrections | None = None,
                    rows: tuple[int, int] | None = None, tilt: Tilt | None = None) -> Jitter:
    """The scan's jitter, measured on rows ``rows`` (default all) of ``reader`` (a ScanReader),
    read with ``tilt`` (None: none) undone.

    One pass over those rows gives each projection's mass per row m[i, z] and first moment
    along the row, both after the row's air level (its outer columns, AIR_SHARE per side).
    dy: each projection's mass-per-row profile against the median profile (least squares
    over whole-row shifts up to MAX_VERTICAL_SHARE of the rows, refined by a parabola, twice,
    the reference re-made from the aligned profiles), less their median. dx: the centre of
    mass of the rows after dy, less its least-squares fit c + a·cos θ + b·sin θ. Where the
    sample's mass varies by more than MAX_MASS_SPREAD between angles (a sample wider than
    the field of view) dx is 0, and where the profile cannot show a shift (expected error
    over MAX_VERTICAL_ERROR rows) dy is 0, each with a warning naming the file.
    """
    n_angles, n_rows, n_cols = reader.shape
    z0, z1 = rows or (0, n_rows)
    where = getattr(reader, "path", "scan")
    mass = np.empty((n_angles, z1 - z0))
    moment = np.empty((n_angles, z1 - z0))
    sides, peaks = np.zeros(n_angles), np.zeros(n_angles)  # Σ over rows: outer columns' left − right, row peak
    for a in range(z0, z1, MEASURE_CHUNK_ROWS):
        b = min(z1, a + MEASURE_CHUNK_ROWS)
        p = read_line_integrals(reader, a, b, corrections=corrections, tilt=tilt)
        m, s = _mass_and_moment(p)
        mass[:, a - z0:b - z0], moment[:, a - z0:b - z0] = m.T, s.T
        sides += (p[..., :2].mean(axis=-1) - p[..., -2:].mean(axis=-1)).sum(axis=0)
        peaks += p.max(axis=-1).sum(axis=0)
    dy = _vertical_shifts(mass, where)
    mass_s, moment_s = _shift_rows(mass, dy), _shift_rows(moment, dy)
    dx = _horizontal_shifts(mass_s.sum(axis=1), moment_s.sum(axis=1), np.deg2rad(reader.angles_deg), where)
    if dx.any() and float(np.abs(sides).max()) > EDGE_SAMPLE_RATIO * max(float(peaks.max()), 1e-12):
        # blind probe P: a round sample 4-10 px past one edge at some angles, its mass within 5 %,
        # read as jitter: FBP 24.72 -> 20.69 dB, without a word
        assume(where, "jitter: the sample reaches past the detector's edge at some angles (the outer columns of one "
                      "side read it), which moves its centre of mass; no sideways shift is corrected")
        dx = np.zeros(n_angles)
    return Jitter(tuple(float(v) for v in dy), tuple(float(v) for v in dx))


def _mass_and_moment(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's mass Σ_x p and first moment Σ_x x·p (both (z, angle)) of line integrals
    p (z, angle, col), after the row's air level: the lower of its two sides' outer columns'
    means (AIR_SHARE per side), so that a sample entering one side at some angles does not
    move it (blind probe O: a particle 3 px from the edge read as 0.46 px of jitter, and
    undoing it cost FBP 6.8 dB). Left (blind probe P): at I0 300 the lower of two noisy sides
    is biased low while the sample is at neither, which strays 0.3 px in every row alike, a
    false hint (0.35 dB if followed); a per-row choice fails a sample orbiting to both edges."""
    p = np.asarray(p, dtype=np.float64)
    n_cols = p.shape[-1]
    k = max(2, int(round(n_cols * AIR_SHARE)))
    x = np.arange(n_cols, dtype=np.float64)
    air = np.minimum(p[..., :k].mean(axis=-1), p[..., -k:].mean(axis=-1))
    return p.sum(axis=-1) - n_cols * air, p @ x - air * x.sum()


def jitter_hint(p: np.ndarray, angles_deg: np.ndarray) -> str | None:
    """A hint naming ``--correct-jitter`` where rows p (z, angle, col) of a scan show a stage
    that wobbles: the sample inside the field of view (mass within HINT_MASS_SPREAD) and its
    centre of mass straying from its sinusoid by more than HINT_JITTER_PX RMS in a way the
    even and the odd rows share (the mean product of their strays): a stage moves both, the
    photon noise of each is its own (alone it strays 0.40 px RMS in a thin 16-row band of the
    128³ bench scan, 0.10 px shared); else None."""
    th = np.deg2rad(angles_deg)
    strays = []
    for rows in (p[0::2], p[1::2]):
        m, s = _mass_and_moment(rows)
        stray = _centre_strays(m.sum(axis=0), s.sum(axis=0), th, HINT_MASS_SPREAD)
        if stray is None:
            return None
        strays.append(stray)
    if np.mean(strays[0] * strays[1]) <= HINT_JITTER_PX ** 2:
        return None
    return (f"the projections' centre of mass strays more than {HINT_JITTER_PX:g} px (RMS) from the sinusoid "
            "a steady stage draws: if the stage wobbles between exposures, --correct-jitter (config: "
            "reconstruction.correct_jitter) measures and undoes it")


def _vertical_shifts(mass: np.ndarray, where) -> np.ndarray:
    """(n_angles,) shifts of each row profile mass[i] against the median profile."""
    n_angles, n = mass.shape
    ref = np.median(mass, axis=0)
    dy = np.zeros(n_angles)
    if n >= 8 and np.any(ref != ref[0]):
        max_shift = max(1, int(n * MAX_VERTICAL_SHARE))
        for _ in range(2):
            dy = np.array([_profile_shift(mass[i], ref, max_shift) for i in range(n_angles)])
            dy -= np.median(dy)
            aligned = _shift_rows(mass, dy)
            ref = np.median(aligned, axis=0)
        error = vertical_shift_error(aligned, ref)
        if error <= MAX_VERTICAL_ERROR:
            return dy
    else:
        error = np.inf
    # the same words for every scan, so an experiment's survey says it once
    assume(where, f"jitter: the sample's mass per row is too even to align up and down by (a shift would be "
                  f"uncertain by more than {MAX_VERTICAL_ERROR} rows); no vertical shift is corrected")
    return np.zeros(n_angles)


def vertical_shift_error(aligned: np.ndarray, ref: np.ndarray) -> float:
    """Expected error (rows) of a profile's shift against ``ref`` (n,): the noise of the
    aligned profiles (n_angles, n) about ``ref`` (1.4826·MAD) over √Σ ref′²."""
    resid = aligned - ref[None, :]
    noise = 1.4826 * np.median(np.abs(resid - np.median(resid)))
    slope = np.sqrt(np.sum(np.gradient(ref) ** 2))
    return float(noise / slope) if slope > 0 else float("inf")


def _profile_shift(profile: np.ndarray, ref: np.ndarray, max_shift: int) -> float:
    """d (rows) such that profile(z + d) best matches ref(z): mean squared difference over the
    overlap at whole shifts −max_shift..max_shift, then a parabola through the best three."""
    n = ref.size
    shifts = np.arange(-max_shift, max_shift + 1)
    cost = np.empty(shifts.size)
    for j, d in enumerate(shifts):
        lo, hi = max(0, -d), min(n, n - d)
        cost[j] = np.mean((profile[lo + d:hi + d] - ref[lo:hi]) ** 2)
    j = int(np.argmin(cost))
    if 0 < j < shifts.size - 1:
        c0, c1, c2 = cost[j - 1:j + 2]
        curve = c0 - 2 * c1 + c2
        if curve > 0:
            return float(shifts[j] + 0.5 * (c0 - c2) / curve)
    return float(shifts[j])


def _horizontal_shifts(mass: np.ndarray, moment: np.ndarray, theta: np.ndarray, where) -> np.ndarray:
    """(n_angles,) each projection's centre of mass less its fit c + a·cos θ + b·sin θ."""
    strays = _centre_strays(mass, moment, theta, MAX_MASS_SPREAD)
    if strays is None:
        assume(where, f"jitter: the sample's projected mass varies by more than {100 * MAX_MASS_SPREAD:.0f}% "
                      "between angles (a sample wider than the field of view, or a changing beam?); no "
                      "sideways shift is corrected")
        return np.zeros(theta.size)
    return strays


def _centre_strays(mass: np.ndarray, moment: np.ndarray, theta: np.ndarray, max_spread: float) -> np.ndarray | None:
    """(n_angles,) the centre of mass moment/mass less its fit c + a·cos θ + b·sin θ (the
    sinusoid a steady stage draws); None where the mass varies by more than ``max_spread``
    (s.d. / mean) between angles: the sample leaves the field, and its centre says nothing."""
    mean = float(np.mean(mass))
    if not mean > 0 or not np.std(mass) <= max_spread * mean:
        return None
    return _off_orbit(moment / mass, theta)


def _off_orbit(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """x (n_angles,) less its least-squares fit c + a·cos θ + b·sin θ."""
    design = np.stack([np.ones_like(theta), np.cos(theta), np.sin(theta)], axis=1)
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    return x - design @ coef


def observable_part(dy: np.ndarray, dx: np.ndarray, angles_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The part of a stage's displacements (dy, dx), pixels per exposure, that the data can
    tell from where the sample is: dy less its median, dx less its c + a·cos θ + b·sin θ.
    What :func:`estimate_jitter` measures, at best; the rest moves the whole volume."""
    dy = np.asarray(dy, dtype=np.float64)
    return dy - np.median(dy), _off_orbit(np.asarray(dx, dtype=np.float64), np.deg2rad(angles_deg))


def _shift_rows(a: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """a (n_angles, n) with each a[i] read at z + dy[i] (linear, edges held)."""
    n = a.shape[1]
    z = np.clip(np.arange(n)[None, :] + dy[:, None], 0, n - 1)
    i0 = np.minimum(np.floor(z).astype(int), max(n - 2, 0))
    f = z - i0
    i1 = np.minimum(i0 + 1, n - 1)
    rows = np.arange(a.shape[0])[:, None]
    return (1 - f) * a[rows, i0] + f * a[rows, i1]


def read_line_integrals(reader, z0: int, z1: int, *, corrections: Corrections | None = None,
                        jitter: Jitter | None = None, tilt: Tilt | None = None,
                        columns: bool = True, noise: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Line integrals (z, angle, col) float32 of rows z0:z1 of ``reader`` with ``tilt`` and
    ``jitter`` (None: none) undone: in projection i, row z at column x is read at
    z + dy[i] − s·(x − c0), then column x at x + s·(z − z0) + dx[i] (the last term unless
    ``columns`` is False), Lanczos-3 both ways, the scan's edges held; rows beyond z0:z1 are
    read as needed (and one more each side for ``corrections.remove_outliers``, whose spatial
    median spans three rows), so a row comes out the same whatever chunk it is read in.

    A reconstruction reads with ``columns=False`` and puts dx in its projector instead
    (:attr:`recon.geometry.ScanGeometry.offsets`): no resampling along the rows, whose
    smoothing cost modified MLEM 1.7 dB at 1.5 px of jitter (docs/benchmarks.md).

    ``noise``: also return the line integrals' variance (same shape; NaN in rows whose flats
    cannot tell: :mod:`recon.io.noise`), from each row's own flats, for MLEM's stop at the noise."""
    if noise:
        from recon.io.noise import checked, chunk_noise, line_integral_variance

        got: list = []
        p = _read_line_integrals(reader, z0, z1, corrections, jitter, tilt, columns, got)
        a = got[0].z0
        noise = checked(chunk_noise(got[0]).rows(z0 - a, z1 - a), p)  # against the projections' own noise
        return p, line_integral_variance(p, noise)
    return _read_line_integrals(reader, z0, z1, corrections, jitter, tilt, columns)


def _read_line_integrals(reader, z0: int, z1: int, corrections: Corrections | None, jitter: Jitter | None,
                         tilt: Tilt | None, columns: bool, chunks: list | None = None) -> np.ndarray:
    n_angles, n_rows, n_cols = reader.shape
    dy = np.zeros(n_angles) if jitter is None else np.asarray(jitter.dy, dtype=np.float64)
    dx = np.zeros(n_angles) if jitter is None or not columns else np.asarray(jitter.dx, dtype=np.float64)
    slope = 0.0 if tilt is None else tilt.slope
    # zinger removal compares each sample with its row neighbours: one more row each side
    halo = 1 if corrections is not None and corrections.remove_outliers is not None else 0
    if not dy.any() and not dx.any() and slope == 0.0:
        a, b = max(0, z0 - halo), min(n_rows, z1 + halo)
        return _rows(reader, a, b, corrections, halo, chunks)[z0 - a:z1 - a]
    lean = np.zeros(n_cols) if tilt is None else -slope * (np.arange(n_cols) - tilt.column)  # rows, per column
    z = np.arange(z0, z1, dtype=np.float64)
    a = max(0, int(np.floor(z0 + dy.min() + lean.min())) + TAPS[0] - halo)
    b = min(n_rows, int(np.floor(z1 - 1 + dy.max() + lean.max())) + TAPS[-1] + 1 + halo)
    p = _rows(reader, a, b, corrections, halo, chunks)  # (z, angle, col)
    across = np.zeros(z.size) if tilt is None else slope * (z - tilt.row)  # columns, per row
    out = np.empty((z.size, n_angles, n_cols), dtype=np.float32)
    col = np.arange(n_cols)[None, :]
    for i in range(n_angles):
        if dy[i] == 0.0 and slope == 0.0:
            out[:, i] = p[z0 - a:z1 - a, i]
        else:
            pos = np.clip(z[:, None] + dy[i] + lean[None, :], 0, n_rows - 1)  # (z, col) rows to read
            k = np.floor(pos).astype(int)
            weights = _lanczos_weights((pos - k).astype(np.float32))
            out[:, i] = sum(w * p[np.clip(k + t, 0, n_rows - 1) - a, i, col] for w, t in zip(weights, TAPS))
        shift = across + dx[i]
        if shift.any():
            out[:, i] = _read_columns_at(out[:, i], shift)
    return out


def _rows(reader, a: int, b: int, corrections: Corrections | None, halo: int, chunks: list | None) -> np.ndarray:
    """Line integrals (z, angle, col) of rows a:b. A row that measured nothing is filled from
    the rows within DEAD_ROW_REACH of it (:func:`recon.io.preprocess.fill_empty_rows`): where
    those reach past a:b, the rows are read again with that many more each side (and ``halo``,
    the zinger median's), so every row comes out as in a read of the whole scan."""
    reach = DEAD_ROW_REACH + halo
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            p, empty = line_integrals_with_gaps(_read(reader, a, b, chunks), corrections=corrections)
        except UnlitRowsError:
            if a == 0 and b == reader.shape[1]:
                raise
            p, empty = None, np.ones(b - a, dtype=bool)  # dead rows, maybe, with lit rows beside them
    rows = np.flatnonzero(empty)
    if rows.size and ((a > 0 and rows[0] < reach) or (b < reader.shape[1] and rows[-1] >= b - a - reach)):
        a2, b2 = max(0, a - reach), min(reader.shape[1], b + reach)
        if chunks is not None:
            chunks.pop()
        with warnings.catch_warnings(record=True) as said:  # what the wider read did is said, not the first's
            warnings.simplefilter("always")
            p = line_integrals_with_gaps(_read(reader, a2, b2, chunks), corrections=corrections)[0][a - a2:b - a2]
    for w in said:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return p


def _read(reader, a: int, b: int, chunks: list | None):
    """``reader.read(a, b)``, kept in ``chunks`` where given (its flats tell the noise)."""
    chunk = reader.read(a, b)
    if chunks is not None:
        chunks.append(chunk)
    return chunk


#: Lanczos-3 interpolation: its taps relative to floor(position)
TAPS = (-2, -1, 0, 1, 2, 3)


def _lanczos_weights(t: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weights of the taps TAPS for fractional positions t in [0, 1): the Lanczos kernel
    sinc(x)·sinc(x/3), normalised to sum 1. Nearer a band-limited shift than cubic
    convolution (four taps): on a 64-px phantom with 1 px of vertical jitter, FBP 23.9 dB
    after the shifts are undone, against 23.7 dB with cubic convolution and 24.4 dB still."""
    w = [np.sinc(t - k) * np.sinc((t - k) / 3.0) for k in TAPS]
    total = sum(w)
    return tuple(x / total for x in w)


def _read_columns_at(rows: np.ndarray, d: np.ndarray | float) -> np.ndarray:
    """rows (z, col) read at columns x + d (d: one shift, or one per row), Lanczos-3, the edges held."""
    n = rows.shape[-1]
    x = np.arange(n)[None, :] + np.reshape(d, (-1, 1))
    i = np.floor(x).astype(int)
    weights = _lanczos_weights((x - i).astype(rows.dtype))
    z = np.arange(rows.shape[0])[:, None]
    return sum(w * rows[z, np.clip(i + k, 0, n - 1)] for w, k in zip(weights, TAPS))
