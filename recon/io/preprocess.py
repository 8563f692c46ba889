"""Counts → line integrals: flat/dark normalisation, −log, clamping, repair of bad pixels and
of dropped frames; opt-in zinger removal, air levelling and stripe removal (:class:`Corrections`)."""
from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from recon.errors import FlytomoError
from recon.io.scan import RawChunk

MAX_BAD_FRACTION = 0.5  # above this share of bad pixels a chunk is refused, not repaired
#: a projection whose mean line integral m differs from the running median M of its
#: neighbours' by more than STEP + SHARE·|M| is a dropped frame (for a thin sample, a factor
#: e^0.5 ≈ 1.65 in mean transmission; a sample wider than the field of view, mean p 4.6, seen
#: from 30 angles, varies by at most 0.24 between neighbours)
DROPPED_FRAME_STEP = 0.5
DROPPED_FRAME_SHARE = 0.25
DROPPED_FRAME_WINDOW = 9  # projections in the running median (odd)
#: a projection whose least attenuated rays are this much above its row's usual is no projection,
#: however many such frames run together (5 % of the beam left: +3.0)
DROPPED_FRAME_GROSS = 3.0
#: a beam dip (:func:`beam_steps`): a step of every ray of a frame's row by more than this
#: (−log of the beam's share: 0.1 is a 10 % dip) and BEAM_STEP_SIGMAS times the row's
#: frame-to-frame spread; steps that come back to zero within BEAM_STEP_CLOSE of the largest
#: close a dip; the boundaries beside a step must differ by less than BEAM_STEP_RAMP of the threshold
BEAM_STEP_MIN = 0.1
BEAM_STEP_SIGMAS = 8.0
BEAM_STEP_CLOSE = 0.2
BEAM_STEP_CLOSE_SIGMAS = 5.0
BEAM_STEP_RAMP = 0.5
BEAM_STEP_WINDOW = 9  # boundaries in the running median a jump is measured from (odd)
BEAM_STEP_CHAIN = 3  # at most this many jumps close one dip (in, out; in, half-way, out)
#: phase-contrast fringes (:func:`phase_fringe_share`): valleys this many noise levels deep, with
#: columns this far to each side; a hint above this share of the samples
PHASE_FRINGE_SIGMAS = 6.0
PHASE_FRINGE_REACH = 3
PHASE_FRINGE_HINT_SHARE = 5e-4
PHASE_FRINGE_BLOCK = 1 << 23  # samples looked at together (rows at a time: the copies stay small)
MAX_DROPPED_FRACTION = 0.1  # more such frames than this share: refused, not repaired
DEAD_ROW_REACH = 3  # a detector row that measured nothing is filled from measured rows this near
#: a line (one projection's row) whose mean transmission is below this, and below a tenth of the
#: row's median over the projections, holds no light (counts at the dark level or below: a frame
#: of a scan still being written, the beam lost); a sample wider than the field, mean p 4.6, is
#: at 0.01
UNLIT_LINE_TRANSMISSION = 2e-3
#: a dark frame whose level (median count) is more than this share of the way from the lowest
#: dark's up to the projections' median count was taken with the beam on, and is left out of the
#: mean dark (:func:`usable_frames`)
BAD_FRAME_SHARE = 0.5
#: a flat below this share of the way from the lowest dark to the projections' brightest counts
#: is unlit (it sits at the dark level: shutter closed, beam lost) and is left out of the mean
#: flat; flats at two beam currents (1000 and 400 over darks of 100, projections at 700) are lit
UNLIT_FLAT_SHARE = 0.3
#: more than this share of a chunk's transmissions below ``min_transmission`` (clamped there:
#: the probe's scan with 29 % clamped came out 12 % low in attenuation, without a word): a hint
CLAMPED_HINT_SHARE = 0.01
#: stripe (ring-artifact) removal methods: "mean", full stripes from the detector columns'
#: mean over the angles (C. Boin, A. Haibel, Opt. Express 14, 12071 (2006)); "sorting", small full
#: and partial stripes, and "all", also large and dead ones (N. T. Vo et al., Opt. Express 26,
#: 28396 (2018), algorithms 3 and 4–6 + 3, as algotom.prep.removal implements them)
STRIPE_METHODS = ("mean", "sorting", "all")
#: air levelling: where the two sides' outer-column means differ by less than this (line
#: integral), a projection row loses their mean, else the lower one (the sample entered the other)
AIR_SIDES_AGREE = 0.05
#: the levelling offset of a row ranging over more than this across the scan (5th to 95th
#: percentile) says the outer columns are not air at every angle: a warning
AIR_OFFSET_SPREAD = 0.3
#: without air levelling, outer columns whose line integral sits this far from zero at nearly
#: every angle (5th to 95th percentile within AIR_HINT_SPREAD) get a hint (:func:`air_offset_hint`)
AIR_HINT_OFFSET = 0.03
AIR_HINT_SPREAD = 0.1
#: the sample inside must read this many times the edges' level above them for the edges to be
#: taken as air off zero (a sample wider than the field reads flat edges too: blind probe P's
#: cylinder 1.5x the field got the offset hint, and --air-columns took it to 2.95 dB)
SAMPLE_OVER_EDGES = 2.0
#: the beam-change hint (``air_columns`` None, :func:`beam_change_rows`): a row's outer columns
#: are air with the flux's offset where, at 90 % of the angles, the two sides and the next columns
#: inward agree within FLUX_FLAT_SIGMAS times the noise of their difference (FLUX_FLAT_FLOOR at
#: least); it counts where that offset's RMS over the angles exceeds FLUX_OFFSET_SIGMAS times
#: its noise and FLUX_OFFSET_FLOOR, its median stays under FLUX_MAX_OFFSET (a beam 22 % dimmer)
#: and the sample inside reads at least twice it (a sample wider than the field reads flat edges too).
#: The floor is a 1 % beam change, which costs modified MLEM 0.04 dB (docs/benchmarks.md, raw
#: defects): blind probe Q's phase-retrieved (Paganin) projections, whose kernel's tail moves the
#: edges by -0.005..+0.002 with the angle, got the hint at 0.005
FLUX_FLAT_SIGMAS = 5.0
FLUX_FLAT_FLOOR = 0.005
FLUX_OFFSET_SIGMAS = 4.0
FLUX_OFFSET_FLOOR = 0.01
FLUX_MAX_OFFSET = 0.25
#: integer detectors' full-scale counts (8, 12, 14, 16 bit); flats with more than
#: SATURATED_SHARE of their samples at one of these get a hint (:func:`saturation_hint`)
FULL_SCALES = (255.0, 4095.0, 16383.0, 65535.0, 2147483647.0, 4294967295.0)
SATURATED_SHARE = 0.001



#: projections spread evenly over a scan that :func:`unlit_frames` reads besides its tail
SPREAD_FRAMES = 16


@dataclass(frozen=True)
class UnlitFrames:
    """What :func:`unlit_frames` saw: ``tail``, the scan's last projections hold no light (more
    than :data:`MAX_DROPPED_FRACTION` of them: a file still being written); ``dark``, the frames
    of the ``sampled`` spread evenly over the scan that hold none."""

    tail: bool = False
    dark: tuple[int, ...] = ()
    sampled: int = 0

    @property
    def many_dark(self) -> bool:
        """More than :data:`MAX_DROPPED_FRACTION` of the spread sample holds no light: recon
        will likely refuse the scan (it repairs dropped frames up to that share)."""
        return self.sampled > 0 and len(self.dark) > MAX_DROPPED_FRACTION * self.sampled


def unlit_frames(reader) -> UnlitFrames:
    """Frames of a scan that hold no light, from three rows of a few frames (what ``check`` can
    afford for every scan of a series). The tail: the last projection and the one just before
    the last :data:`MAX_DROPPED_FRACTION` are both dark (below :data:`UNLIT_LINE_TRANSMISSION` in
    the three rows against the flats and darks, or mostly NaN in one), as are two frames between
    them; a last frame alone dark is a dropped frame, which recon repairs. Elsewhere:
    :data:`SPREAD_FRAMES` frames spread evenly over the scan (the beam lost mid-scan). An empty
    result for a reader that cannot read single frames."""
    n_angles, n_rows = int(reader.shape[0]), int(reader.shape[1])
    first = max(0, n_angles - 1 - int(MAX_DROPPED_FRACTION * n_angles))
    tail = np.unique(np.linspace(first, n_angles - 1, 4).round().astype(int))  # the tail, 4 frames of it
    spread = np.unique(np.linspace(0, n_angles - 1, min(SPREAD_FRAMES, n_angles)).round().astype(int))
    frames = np.union1d(tail, spread)
    dark_rows, nan_rows = [], []
    for z in sorted({n_rows // 4, n_rows // 2, (3 * n_rows) // 4}):
        try:
            chunk = reader.read(z, z + 1, projections=frames)
        except TypeError:
            return UnlitFrames()
        dark = chunk.darks.mean(axis=0)
        frame = chunk.tomo[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN line: NaN, below
            level = np.nanmean((frame - dark[0]) / (chunk.flats.mean(axis=0)[0] - dark[0]), axis=1)
        dark_rows.append(~(level >= UNLIT_LINE_TRANSMISSION))
        nan_rows.append(np.isnan(frame).mean(axis=1) > 0.5)
    # a frame is missing where it is dark in every row read (a dense sample darkens some rows,
    # never all), or mostly NaN in any (no sample is NaN)
    missing = np.all(dark_rows, axis=0) | np.any(nan_rows, axis=0)
    gone = set(frames[missing].tolist())
    return UnlitFrames(tail=all(int(i) in gone for i in tail), dark=tuple(int(i) for i in spread if int(i) in gone),
                       sampled=int(spread.size))


def rough_line_integrals(chunk: RawChunk) -> np.ndarray:
    """−log((tomo − dark) / (flat − dark)) of a chunk (angle, z, col) with its mean flat and dark,
    transmissions clamped at 1e-3 and nothing repaired (NaN where a pixel has no flat): what a
    quick look at a few frames needs, not a reconstruction's input (:func:`line_integrals`)."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN pixel: NaN
        dark = np.nanmean(chunk.darks, axis=0)
        return -np.log(np.clip((chunk.tomo - dark) / (np.nanmean(chunk.flats, axis=0) - dark), 1e-3, None))


#: projections :func:`row_mass` reads (spread over the scan) and rows it reads at once
MASS_FRAMES = 4
MASS_BLOCK_ROWS = 256


def row_mass(reader, z0: int, z1: int) -> np.ndarray | None:
    """(z1 − z0,) how much sample each row z0:z1 of a scan holds: the mean over the columns of
    its line integrals, −log((tomo − dark) / (flat − dark)) with the mean flat and dark, above the
    row's own 5th percentile (so an offset of the air does not count), in :data:`MASS_FRAMES`
    projections spread over the scan, their mean. A wide sample outweighs a thin dense pin (a
    row's spread did not: the pin's rows were judged in place of the particle's). Reads those
    frames' rows and the flats and darks; None for a reader that cannot read single frames."""
    n_angles = int(reader.shape[0])
    frames = np.unique(np.linspace(0, n_angles - 1, MASS_FRAMES).round().astype(int))
    out = []
    for a in range(z0, z1, MASS_BLOCK_ROWS):
        try:
            chunk = reader.read(a, min(a + MASS_BLOCK_ROWS, z1), projections=frames)
        except TypeError:
            return None
        p = rough_line_integrals(chunk)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row: NaN
            base = np.nanpercentile(p, 5, axis=2)  # (frame, z)
            out.append(np.nanmean(np.nanmean(p, axis=2) - base, axis=0))
    return np.concatenate(out).astype(np.float32)


def full_scale_of(value: float) -> float | None:
    """The entry of FULL_SCALES that ``value`` is, also as float32 rounds it (2³² − 1 reads 2³²);
    None where it is none of them."""
    return next((f for f in FULL_SCALES if value == f or float(np.float32(value)) == float(np.float32(f))), None)


@dataclass(frozen=True)
class Corrections:
    """Opt-in repairs of line integrals, each off (None) by default; the names are those of
    an experiment config's ``reconstruction`` keys, a store's plan and a volume's attributes.

    remove_outliers : zinger threshold, line-integral units (:func:`remove_outliers`).
    remove_stripes : a STRIPE_METHODS name (:func:`remove_stripes`).
    air_columns : outer detector columns per side that are air at every angle
        (:func:`level_by_air`); None: none, with a hint where the outer columns look like a
        beam that changed after the flats (:func:`beam_change_rows`); 0: none, no hint.
    correct_jitter : measure each projection's shift off the ideal rotation over the whole
        scan and undo it (:mod:`recon.io.alignment`); scan-wide, so made where rows are read
        (:func:`recon.io.alignment.read_line_integrals`), not by :func:`line_integrals`.
    correct_tilt : find the rotation axis's lean in the detector plane and turn each
        projection upright (:func:`recon.io.alignment.estimate_tilt`); scan-wide, likewise.
    """

    remove_outliers: float | None = None
    remove_stripes: str | None = None
    air_columns: int | None = None
    correct_jitter: bool = False
    correct_tilt: bool = False

    def __post_init__(self) -> None:
        if self.remove_outliers is not None and not self.remove_outliers > 0:
            raise ValueError(f"outlier threshold must be > 0, got {self.remove_outliers}")
        if self.remove_stripes is not None and (problem := stripe_method_problem(self.remove_stripes)):
            raise ValueError(problem)
        if self.air_columns is not None and (isinstance(self.air_columns, bool) or not self.air_columns >= 0):
            raise ValueError(f"air columns must be a whole number ≥ 0 (0: off), got {self.air_columns}")
        for name in ("correct_jitter", "correct_tilt"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def check_detector(self, n_columns: int, where: object = None) -> None:
        """FlytomoError (naming ``where``) when these repairs cannot run on a detector
        ``n_columns`` wide: air levelling takes at most a quarter of it per side."""
        if self.air_columns is not None and self.air_columns > n_columns // 4:
            raise FlytomoError(where, f"air levelling asks for {self.air_columns} columns per side of a detector "
                                      f"{n_columns} columns wide (at most a quarter of it, {n_columns // 4})")


class DataRepairWarning(UserWarning):
    """Some pixels of a chunk were bad (dead, flat ≤ dark, NaN/inf), or some projections were
    dropped frames, and were interpolated."""


class DataHintWarning(UserWarning):
    """A hint about the data, nothing repaired: the outer detector columns read the same
    attenuation, off zero, at every angle (:func:`air_offset_hint`); flats at the detector's
    full scale (:func:`saturation_hint`)."""


def line_integrals(chunk: RawChunk, *, min_transmission: float = 1e-3,
                   corrections: Corrections | None = None) -> np.ndarray:
    """Line integrals p = −log((tomo − dark) / (flat − dark)) of a chunk of rows.

    Parameters
    ----------
    chunk : RawChunk with tomo (angle, z, col), flats (k, z, col), darks (k, z, col) counts.
        Flats and darks are averaged over k, leaving out NaN/inf samples and bad frames
        (:func:`usable_frames`: unlit flats, darks taken with the beam on).
    min_transmission : transmissions are clamped to [min_transmission, ∞), so p ≤
        −log(min_transmission) and photon-starved pixels stay finite. Transmissions above 1
        (noise) give slightly negative p, which is kept.
    corrections : opt-in repairs (None: none), after every automatic one, in this order:
        zingers (:func:`remove_outliers`: a sample more than ``remove_outliers`` below both
        the median of its 3×3 neighbours in its projection and the median of the same pixel
        in the frames before and after is replaced by the former; 0.3 takes counts over 35 %
        above their neighbours'), air levelling (:func:`level_by_air`: flats taken at another
        beam intensity, a beam whose flux changes from one exposure to the next) and stripes
        (:func:`remove_stripes`: detector columns whose gain drifted from the flats', which
        become rings in the slice).

    Returns
    -------
    (z, angle, col) float32, finite.

    Dead detector pixels (flat ≤ dark, or no finite flat/dark) and non-finite counts are
    replaced, in each row and angle, by linear interpolation between the nearest good
    columns. A dropped frame (in a row, a projection mostly NaN/inf, or one whose mean line
    integral is far off the running median of its neighbours' (:func:`dropped_frames`),
    as when the beam or the detector fails for one exposure: in parallel beam a slice's total
    attenuation does not depend on the angle) is replaced by the mean of the nearest good
    projections before and after it, in acquisition order. Each kind of repair gives a
    DataRepairWarning whose words name the file, not the chunk (a command line shows it once
    per scan). FlytomoError (naming the file) when more than half the detector pixels or half
    the counts are bad, or more than MAX_DROPPED_FRACTION of a row's projections are dropped.
    A row that holds no light in nearly every projection (more than 1 − MAX_DROPPED_FRACTION)
    while other rows of the chunk do is a detector row that died after its flats; such a row, a
    row without a working pixel and a module gap between rows (:func:`blind_pixels`) measured
    nothing: each is filled from the measured rows at most DEAD_ROW_REACH rows above and below
    it in the chunk (:func:`fill_empty_rows`), or left empty (air) where none is, with a warning
    naming it; a chunk whose rows are all dark is refused.
    :func:`recon.io.alignment.read_line_integrals` reads the rows a fill needs beyond a chunk.
    """
    return line_integrals_with_gaps(chunk, min_transmission, corrections)[0]


def line_integrals_with_gaps(chunk: RawChunk, min_transmission: float = 1e-3,
                             corrections: Corrections | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`line_integrals`, and the (z,) rows of the chunk that measured nothing."""
    if not min_transmission > 0:
        raise ValueError("min_transmission must be > 0")
    where = chunk.source
    z0, z1 = chunk.rows
    tomo = np.asarray(chunk.tomo, dtype=np.float32)
    flats, darks = usable_frames(chunk.flats, chunk.darks, where, tomo=chunk.tomo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: handled as dead below
        flat = np.nanmean(np.where(np.isfinite(flats), flats, np.nan), axis=0, dtype=np.float64)
        dark = np.nanmean(np.where(np.isfinite(darks), darks, np.nan), axis=0, dtype=np.float64)
    gain = flat - dark
    blind, blind_rows = blind_pixels(flats, tomo)
    dead = ~(gain > 0) | blind  # also NaN
    # whole dead rows are filled from the rows beside them (below); the rest must mostly work
    # (blind probe P: 3 dead rows in a chunk of 5 refused the scan, whatever chunking read it whole)
    partly = ~dead.all(axis=1)
    bad = float(dead[partly].mean()) if partly.any() else 1.0
    if bad > MAX_BAD_FRACTION:
        err = FlytomoError(where, f"rows {z0}:{z1}: flat field not above the dark level in {100 * bad:.0f}% "
                                  "of the detector pixels (no beam in the flats, or flats and darks swapped?)")
        raise UnlitRowsError(err) if not partly.any() else err
    nonfinite = ~np.isfinite(tomo)
    if nonfinite.mean() > MAX_BAD_FRACTION:
        raise FlytomoError(where, f"rows {z0}:{z1}: {100 * nonfinite.mean():.0f}% of the projection counts are NaN or infinite")
    dark32 = np.where(dead, 0.0, dark).astype(np.float32)
    inv_gain = np.where(dead, 1.0, 1.0 / np.where(dead, 1.0, gain)).astype(np.float32)
    trans = (tomo - dark32[None]) * inv_gain[None]  # (angle, z, col)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN lines: lost, below
        level = np.nanmean(trans, axis=2)  # (angle, z)
        unlit = (level < UNLIT_LINE_TRANSMISSION) & (level < 0.1 * np.nanmedian(level, axis=0)[None])
    # a row dark in nearly every projection, beside lit rows, while its flats are lit: a detector
    # row that died after the flats (blind probe M: the whole scan was refused as "beam lost")
    dark_lines = ~(level >= UNLIT_LINE_TRANSMISSION)  # (angle, z), NaN too
    dead_rows = (np.mean(dark_lines, axis=0) > 1 - MAX_DROPPED_FRACTION) & partly  # dead in the flats: unread, below
    if dead_rows.all():  # every row: the beam, not the detector (or rows that died, read with more rows)
        raise UnlitRowsError(_no_light(where, z0, z1, int(np.max(np.sum(dark_lines, axis=0))), level.shape[0]))
    unlit[:, dead_rows] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without a good pixel: NaN, none died
        row_gain = np.nanmedian(np.where(dead, np.nan, gain), axis=1)  # (z,): the row's typical flat − dark
    died = died_pixels((tomo - dark32[None]) / row_gain[None, :, None].astype(np.float32), dead | dead_rows[:, None])
    dead = dead | died
    # clamped rays of the sample: not in dead rows or pixels, nor in frames without light (a beam loss)
    seen = ~unlit[:, :, None] & ~died[None] & ~dead_rows[None, :, None]
    starved = np.mean((trans < min_transmission)[np.broadcast_to(seen, trans.shape)]) > CLAMPED_HINT_SHARE
    np.maximum(trans, np.float32(min_transmission), out=trans)  # NaN stays NaN
    p = -np.log(trans)
    lost = (nonfinite.mean(axis=2) > 0.5) | unlit  # (angle, z) lines mostly NaN/inf, or dark: replaced whole
    nonfinite &= ~lost[:, :, None]
    unread = dead.all(axis=1) & ~dead_rows & ~blind_rows  # (z,) rows without a working pixel: no column to read
    has_dead, has_nan = bool(dead[~unread].any()), bool((nonfinite & ~dead[None]).any())
    if has_dead or has_nan:
        _repair(p, dead, nonfinite)
    # the same words for every chunk of a file, so the command line shows each once per scan
    if has_dead:
        warnings.warn(f"{where or 'scan'}: dead detector pixels (flat ≤ dark, no finite flat or dark, at the "
                      "detector's full scale in every frame, as in a module gap, or dark in every projection while lit "
                      "in the flats) are repaired by interpolation from neighbouring columns", DataRepairWarning,
                      stacklevel=2)
    if has_nan:
        warnings.warn(f"{where or 'scan'}: NaN/inf projection counts are repaired by interpolation from "
                      "neighbouring columns", DataRepairWarning, stacklevel=2)
    p[lost] = 0.0
    empty = dead_rows | unread | blind_rows  # (z,) measured nothing: air until filled, last
    p[:, empty] = 0.0
    dropped = lost | dropped_frames(p)  # (angle, z): each row decides alone, whatever the chunk
    dropped[:, empty] = False
    c = corrections or Corrections()
    _level_beam_dips(p, dropped, where, hint=c.air_columns is None)
    if dropped.any():
        worst = int(dropped.sum(axis=0).max())
        if worst > MAX_DROPPED_FRACTION * dropped.shape[0]:
            n_unlit = int(unlit.sum(axis=0).max())
            if n_unlit > MAX_DROPPED_FRACTION * dropped.shape[0]:
                raise _no_light(where, z0, z1, n_unlit, dropped.shape[0])
            raise FlytomoError(where, f"rows {z0}:{z1}: {worst} of {dropped.shape[0]} projections are NaN "
                                      "or far off their neighbours in mean transmission (unstable beam, or "
                                      "projections out of order?)")
        _replace_frames(p, dropped)
        frames = _frame_ranges(np.flatnonzero(dropped.any(axis=1)))
        warnings.warn(f"{where or 'scan'}: projection(s) {frames} look like dropped frames (NaN, or mean "
                      "transmission far off their neighbours'); each is replaced by the mean of its "
                      "nearest good neighbours", DataRepairWarning, stacklevel=2)
    if (share := phase_fringe_share(p)) > PHASE_FRINGE_HINT_SHARE:  # the same words for every chunk
        warnings.warn(f"{where or 'scan'}: rays read more light than the flats in narrow bands beside edges that move "
                      "with the sample (transmission above 1, beyond the noise): Fresnel (phase-contrast) fringes? "
                      "flytomo reconstructs absorption, so the fringes' bright halo and dark band at the outline can "
                      "read as cracks near the surface (README, Phase contrast): retrieve the phase first (a Paganin "
                      "filter, as tomopy's retrieve_phase), or analyse with segmentation boundary_margin: 2",
                      DataHintWarning, stacklevel=2)
    if c.remove_outliers is not None:
        remove_outliers(p, c.remove_outliers)
    if c.air_columns is None and beam_change_rows(p).any():  # the same words for every chunk
        n = edge_columns(p.shape[2])
        warnings.warn(f"{where or 'scan'}: the outer {n} detector columns of some rows read as flat as air, off zero "
                      "by an amount that changes with the angle: a beam that changed after the flats (decay, dips, "
                      f"flicker)? If the sample stays inside the field of view, --air-columns {n} (config: "
                      "reconstruction.air_columns) levels each projection by them; a sample wider than the field "
                      "can read the same, and levelling it would take its attenuation off", DataHintWarning,
                      stacklevel=2)
    elif c.air_columns:
        c.check_detector(p.shape[2], where)
        typical = float(np.median(np.abs(_air_level(p, c.air_columns, axis=-1))))
        spread = level_by_air(p, c.air_columns)
        if spread > AIR_OFFSET_SPREAD:
            warnings.warn(f"{where or 'scan'}: the outer {c.air_columns} detector columns are not air at every "
                          f"angle (their line integral ranges over {spread:.2f} in a row): levelling by air "
                          "needs the sample inside the field of view", DataRepairWarning, stacklevel=2)
        elif float(np.percentile(p, 99)) < SAMPLE_OVER_EDGES * typical:  # levelled: the sample above its edges
            warnings.warn(f"{where or 'scan'}: the outer {c.air_columns} detector columns read more than half of "
                          "what the sample reads above them: a sample wider than the field of view? "
                          "Levelling by air takes its attenuation off (leave --air-columns out)", DataRepairWarning,
                          stacklevel=2)
    elif c.air_columns is None and (hint := air_offset_hint(p)) is not None:
        warnings.warn(f"{where or 'scan'}: {hint}", DataHintWarning, stacklevel=2)
    if starved:  # the same words for every chunk, as above
        warnings.warn(f"{where or 'scan'}: more than {CLAMPED_HINT_SHARE:.0%} of the transmissions (in some rows) are "
                      f"below {min_transmission:g}, photon-starved rays through the densest parts: they are read as "
                      f"{min_transmission:g} (line integral {-np.log(min_transmission):.1f}), so the attenuation "
                      "there comes out low; a higher energy or a longer exposure sees through", DataHintWarning,
                      stacklevel=2)
    unmeasured = blind | blind_rows[:, None]
    if (hint := saturation_hint(flats[:, ~unmeasured] if unmeasured.any() else flats)) is not None:  # flats kept
        warnings.warn(f"{where or 'scan'}: {hint}", DataHintWarning, stacklevel=2)
    if c.remove_stripes is not None:
        remove_stripes(p, c.remove_stripes)
    if empty.any():
        filled = fill_empty_rows(p, empty)
        for kind, why in ((dead_rows, "hold no light in any projection while their flats do (a row that died after "
                                      "the flats?)"),
                          (unread, "have no working pixel (flat ≤ dark, or no finite flat or dark, along the whole "
                                   "row)"),
                          (blind_rows, "read the detector's full scale in every flat and projection (a module gap "
                                       "between rows?)")):
            for done, fate in ((filled, "interpolated from the rows beside them"),
                               (~filled, f"left empty (no measured row within {DEAD_ROW_REACH} to fill them from)")):
                if (kind & done).any():  # the same words for a row whatever chunk reads it
                    rows = ", ".join(str(z0 + int(i)) for i in np.flatnonzero(kind & done))
                    warnings.warn(f"{where or 'scan'}: detector row(s) {rows} {why}: their slices are {fate}",
                                  DataRepairWarning, stacklevel=2)
    return np.ascontiguousarray(p.transpose(1, 0, 2)), empty


def fill_empty_rows(p: np.ndarray, empty: np.ndarray, reach: int | None = None) -> np.ndarray:
    """Fill, in place, the rows of ``p`` ((angle, z, col) line integrals) that measured nothing
    (``empty``, (z,) bool) from the nearest measured rows at most ``reach`` (DEAD_ROW_REACH)
    above and below: linear between the two, or the one where only one is (the detector's edge).
    Each row depends only on the rows within ``reach`` of it, so a reader that holds them gives
    the same row whatever its chunk. Returns (z,) bool: the empty rows filled."""
    reach = DEAD_ROW_REACH if reach is None else reach
    measured = np.flatnonzero(~empty)
    filled = np.zeros_like(empty)
    for z in np.flatnonzero(empty):
        below = measured[(measured < z) & (measured >= z - reach)]
        above = measured[(measured > z) & (measured <= z + reach)]
        if below.size and above.size:
            lo, hi = int(below[-1]), int(above[0])
            w = (z - lo) / (hi - lo)
            p[:, z] = (1 - w) * p[:, lo] + w * p[:, hi]
        elif below.size or above.size:
            p[:, z] = p[:, int(below[-1] if below.size else above[0])]
        else:
            continue
        filled[z] = True
    return filled


def died_pixels(trans: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """(z, col) bool: detector pixels that died after the flats: counts over the dark, against
    their row's typical flat (``trans``, (angle, z, col); not the pixel's own flat, which may be
    saturated), below :data:`UNLIT_LINE_TRANSMISSION` in more than 1 − :data:`MAX_DROPPED_FRACTION`
    of the projections, where the columns two to each side see light (median over 0.05): a dark
    column 1-3 px wide, not the dense core of a sample (its neighbours are dark too).
    ``dead``: pixels already known dead (not counted again). Blind probe N: a column at 0 counts
    took the axis (found at it) and the volume (0.33 dB) without a word."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        dark = np.mean(~(trans >= UNLIT_LINE_TRANSMISSION), axis=0) > 1 - MAX_DROPPED_FRACTION  # (z, col)
        typical = np.nanmedian(trans, axis=0)
    lit = np.nan_to_num(typical, nan=0.0) > 0.05
    n = lit.shape[1]
    cols = np.arange(n)
    return dark & ~dead & lit[:, np.clip(cols - 2, 0, n - 1)] & lit[:, np.clip(cols + 2, 0, n - 1)]


class UnlitRowsError(FlytomoError):
    """Every row of a chunk holds no light in nearly every projection: the beam lost, or detector
    rows that died, which a read with the rows beside them fills (:func:`recon.io.alignment.read_line_integrals`)."""

    def __init__(self, err: FlytomoError) -> None:
        super().__init__(err.where, err.problem)


def _no_light(where: str | None, z0: int, z1: int, n: int, total: int) -> FlytomoError:
    """The refusal of rows z0:z1 whose projections (``n`` of ``total``) hold no light."""
    return FlytomoError(where, f"rows {z0}:{z1}: {n} of {total} projections hold no light (counts at the dark level "
                               "or below): a scan still being written, or the beam lost?")


def usable_frames(flats: np.ndarray, darks: np.ndarray, where: object = None,
                  tomo: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flats (k, z, col) and darks (k, z, col) without their bad frames, with a DataRepairWarning
    naming them. A frame's level is its median finite count; the projections ``tomo`` (angle, z,
    col), all lit, anchor the judgement, so that bad frames are found even where they are most of
    their kind (3 lit darks of 5 made a volume 2-13x too bright). With D the lowest dark level:

    - a dark above D + :data:`BAD_FRAME_SHARE` · (P − D), P the projections' median count, was
      taken with the beam on (a saturated one too);
    - a flat below D + :data:`UNLIT_FLAT_SHARE` · (A − D), A the projections' brightest counts
      (the median of their 99th percentiles: air beside the sample), is not lit;
    - a flat over twice as far from D as the flats' median and as A is saturated or stray.

    Without ``tomo``, P and A are the flats' median level. Where every frame of a kind is bad,
    none is left out (swapped or beamless frames: the caller's check says so). Frames that are
    all NaN are left to the caller (averaged out as NaN)."""
    flat_levels, dark_levels = _frame_levels(flats), _frame_levels(darks)
    if not (np.isfinite(flat_levels).any() and np.isfinite(dark_levels).any()):
        return flats, darks
    floor = float(np.nanmin(dark_levels))
    middle, bright = _lit_levels(tomo) if tomo is not None else (np.nan, np.nan)
    if not (np.isfinite(middle) and np.isfinite(bright)):
        middle = bright = float(np.nanmedian(flat_levels))
    if not bright > floor:
        return flats, darks
    unlit = flat_levels < floor + UNLIT_FLAT_SHARE * (bright - floor)  # NaN levels compare False: kept
    lit = dark_levels > floor + BAD_FRAME_SHARE * (max(middle, floor) - floor)
    typical = float(np.nanmedian(flat_levels))
    glaring = (flat_levels - floor > 2 * (typical - floor)) & (flat_levels - floor > 2 * (bright - floor))
    if (unlit | glaring).all() or lit.all():
        return flats, darks
    for bad, kind, why in ((unlit, "flat", "not lit (beam off or shutter closed?)"),
                           (glaring, "flat", "over twice as bright as the others and the projections (saturated, "
                                             "or a stray frame?)"),
                           (lit, "dark", "taken with the beam on")):
        if bad.any():
            frames = ", ".join(str(i) for i in np.flatnonzero(bad))
            warnings.warn(f"{where or 'scan'}: {kind} frame(s) {frames} of {bad.size} look {why}: left out of "
                          f"the mean {kind}", DataRepairWarning, stacklevel=3)
    return flats[~(unlit | glaring)], darks[~lit]


def _frame_levels(frames: np.ndarray) -> np.ndarray:
    """(k,) median finite count of each frame of (k, z, col); NaN for a frame with none."""
    flat = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(np.where(np.isfinite(flat), flat, np.nan), axis=1)


def _lit_levels(tomo: np.ndarray) -> tuple[float, float]:
    """(median, median of the 99th percentiles) of the counts of up to 32 projections of
    ``tomo`` (angle, z, col): the level every lit frame reaches, and the brightest (air)."""
    pick = np.unique(np.linspace(0, len(tomo) - 1, min(32, len(tomo))).round().astype(int))
    counts = np.asarray(tomo[pick], dtype=np.float64).reshape(len(pick), -1)
    counts = np.where(np.isfinite(counts), counts, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmedian(counts)), float(np.nanmedian(np.nanpercentile(counts, 99, axis=1)))


def blind_pixels(flats: np.ndarray, tomo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels that measured nothing, as photon-counting detectors (Eiger, Pilatus) write their
    module gaps: at an integer detector's full scale (FULL_SCALES) in every flat and every
    projection, in runs along the row bounded by pixels whose flat is below 90 % of full scale
    (a run reaching near-saturated pixels is open beam that saturated the detector, air seen at
    full scale: the saturation hint speaks). Without darks their transmission reads 1 at every
    angle (line integral 0 in a column of the sample: a ring 3-4x the sample's contrast); they
    are dead pixels. Returns ((z, col) such pixels, (z,) rows that are such pixels from end to
    end: a gap between rows, which no column repairs)."""
    from scipy import ndimage as ndi

    flats = np.asarray(flats, dtype=np.float64)
    nz, nc = flats.shape[1:]
    none = np.zeros((nz, nc), dtype=bool), np.zeros(nz, dtype=bool)
    finite = np.isfinite(flats)
    top = float(np.max(flats, where=finite, initial=-np.inf)) if flats.size else -np.inf
    if full_scale_of(top) is None:
        return none
    candidate = np.all(flats >= top, axis=0)
    if not candidate.any():
        return none
    candidate &= np.all(tomo >= top, axis=0)
    bright = (flats.mean(axis=0) >= 0.9 * top) | candidate  # (z, col)
    labels, n = ndi.label(bright, structure=[[0, 0, 0], [1, 1, 1], [0, 0, 0]])  # runs along each row
    size = np.bincount(labels.ravel(), minlength=n + 1)
    blind_count = np.bincount(labels.ravel(), weights=candidate.ravel(), minlength=n + 1)
    alone = (blind_count == size) & (size < nc)  # runs of blind pixels only, between unsaturated ones
    alone[0] = False
    rows = candidate.all(axis=1)
    return alone[labels] & candidate, rows


def saturation_hint(flats: np.ndarray) -> str | None:
    """A hint (or None) when more than SATURATED_SHARE of the flat-field samples (k, z, col)
    sit at an integer detector's full scale (FULL_SCALES): there the open beam was brighter
    than the detector counts, so every transmission through the sample is overestimated and
    its line integral too low. The words do not depend on the chunk."""
    finite = flats[np.isfinite(flats)]
    if finite.size == 0:
        return None
    top = float(finite.max())
    scale = full_scale_of(top)  # 2^32 - 1 named as such, not as float32 reads it
    if scale is None or np.mean(finite >= top) <= SATURATED_SHARE:
        return None
    return (f"flat-field counts reach {scale:.0f}, the detector's full scale: saturated flats make the line "
            "integrals through the sample too low (take the flats with a shorter exposure or less beam)")


def air_offset_hint(p: np.ndarray) -> str | None:
    """A hint (or None) when the outer columns of line integrals p (angle, z, col) read the
    same attenuation, off zero by more than AIR_HINT_OFFSET, at nearly every angle: flats taken
    at another beam intensity, which ``air_columns`` levels (modified MLEM lost 1.6 dB to flats
    5 % too bright on a 128³ scan). An offset is as flat across the columns as air: where the
    next columns inward read more than 5 % off it, the sample reaches past the edges (a round
    one about the axis also reads the same at every angle) and there is no hint. The words do
    not depend on the chunk."""
    n = edge_columns(p.shape[2])
    if p.shape[2] < 4 * n:
        return None
    per_angle = _air_level(p, n, axis=(1, 2))  # (angle,): rows pooled, so photon noise averages out
    level = float(np.median(per_angle))
    low, high = np.percentile(per_angle, [5, 95])
    if abs(level) <= AIR_HINT_OFFSET or high - low > AIR_HINT_SPREAD:
        return None
    inner = float(np.median(np.concatenate([p[:, :, n:2 * n].ravel(), p[:, :, -2 * n:-n].ravel()])))
    if abs(inner - level) > 0.05 * abs(level):  # rising inward: a sample past the edges, not an offset
        return None
    if float(np.percentile(p, 99)) - level < SAMPLE_OVER_EDGES * abs(level):  # a cylinder 1.5x the field
        return None  # read 4.8 % more inward and got this hint
    more = "more" if level > 0 else "less"
    return (f"the outer {n} detector columns read {more} attenuation than air at every angle (flats taken at "
            f"another beam intensity?); if the sample stays inside the field of view, --air-columns {n} "
            "(config: reconstruction.air_columns) levels each projection by them")


def phase_fringe_share(p: np.ndarray) -> float:
    """The share of the samples of line integrals p (angle, z, col) in phase-contrast fringes: a
    narrow valley below zero (more light than the flats) and below the columns PHASE_FRINGE_REACH
    to each side by more than max(0.03, PHASE_FRINGE_SIGMAS times its noise), after a median over 3
    frames (a zinger's single frame gone) and a mean over 3 columns, in a column where such valleys
    are not at most angles (a ring's column is). Absorption never reads below zero but by noise or
    a level offset (flats brighter than the beam: flat, no valley); an edge seen through a Fresnel
    fringe dips. Blind probe Q: fringes of a TXM particle 0.7-2.3 %, 0.3 % with a 1-px PSF too,
    0 in 106 absorption scans of probe P, 0.004 % with 0.1 % zingers and 4 % ring columns."""
    n_angles, n_rows, n_cols = p.shape
    k = PHASE_FRINGE_REACH
    if n_angles < 3 or n_cols < 4 * k:
        return 0.0
    rows = max(1, PHASE_FRINGE_BLOCK // (n_angles * n_cols))  # each row alone: a few rows' copies in memory
    found = 0
    for z0 in range(0, n_rows, rows):
        block = p[:, z0:z0 + rows]
        a, b, c = block[:-2], block[1:-1], block[2:]
        middle = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))  # median of 3 frames
        q = (middle[..., :-2] + middle[..., 1:-1] + middle[..., 2:]) / 3  # mean of 3 columns
        d = np.diff(block, axis=0)
        spread = 1.4826 * np.median(np.abs(d - np.median(d, axis=0)), axis=0)  # (z, col): noise and turning
        pixel = np.percentile(spread, 10, axis=-1) / math.sqrt(2)  # (z,): the quietest columns: noise
        least = np.maximum(0.03, PHASE_FRINGE_SIGMAS * 0.39 * pixel)[None, :, None]  # q's noise: 0.39 of a pixel's
        inner = q[..., k:-k]
        valley = (inner < np.minimum(q[..., :-2 * k], q[..., 2 * k:]) - least) & (inner < -least)
        found += int((valley & (valley.mean(axis=0) < 0.5)[None]).sum())
    return found / ((n_angles - 2) * n_rows * (n_cols - 2 - 2 * k))


def remove_outliers(p: np.ndarray, threshold: float) -> int:
    """In place: zingers (bright single-frame specks, from X-rays hitting the sensor) out of
    line integrals p (angle, z, col); returns how many samples were replaced.

    A sample is a zinger when it lies more than ``threshold`` below both the median of its
    3×3 (row, column) neighbourhood in the same projection and the median of the same pixel
    over the frames before and after it; it becomes the former. Needing both keeps edges and
    thin cracks, which persist from one frame to the next (a spatial median alone took 1.1 dB
    off a clean cracked scan at 0.3). Only bright outliers are taken, so with noise above the
    threshold (few counts through a dense sample) it also lowers the noisy bright side: set
    the threshold well above the noise of p.
    """
    from scipy.ndimage import median_filter

    if not threshold > 0:
        raise ValueError("outlier threshold must be > 0")
    spatial = median_filter(p, size=(1, 3, 3), mode="nearest")
    temporal = median_filter(p, size=(3, 1, 1), mode="nearest")
    bad = (spatial - p > threshold) & (temporal - p > threshold)
    p[bad] = spatial[bad]
    return int(bad.sum())


def level_by_air(p: np.ndarray, n_columns: int) -> float:
    """In place: each projection row of line integrals p (angle, z, col) shifted so that its
    outer ``n_columns`` on each side, which must be air, read zero: it loses the mean of the two
    sides' means where they agree within AIR_SIDES_AGREE, else the lower one (the sample
    reached the other side). This takes out flats taken at another beam intensity (an offset
    log(I_flat/I_beam) in every ray) and a flux that changes from one exposure to the next, as
    tomopy's ``normalize_bg`` does. Returns the largest range (5th to 95th percentile over the
    angles) of a row's offset: far above the flux's changes, the edges were not air."""
    Corrections(air_columns=n_columns).check_detector(p.shape[2])
    offset = _air_level(p, n_columns, axis=-1)  # (angle, z)
    p -= offset[..., None].astype(p.dtype)
    low, high = np.percentile(offset, [5, 95], axis=0)
    return float((high - low).max())


def beam_change_rows(p: np.ndarray) -> np.ndarray:
    """(z,) bool: the rows of line integrals p (angle, z, col) whose outer columns look like a
    beam that changed after the flats (a flux that decays, dips or flickers from one exposure to
    the next, or flats taken at another intensity), which ``air_columns`` levels; nothing is
    changed (a hint names the flag). ``n`` = max(4, col/32) columns per side, the next ``n`` inward beside them:
    a side is air at an angle where it agrees with the columns inward (flat, unlike a sample
    past the edge) within FLUX_FLAT_SIGMAS times their noise (from the columns' own spread); a
    row counts where, at 90 % of the angles, a side is air (the offset: the two sides' mean
    where both are and agree, else the lower, or the one side that is; the other angles' from
    their neighbours'), and that offset is more than noise, under
    FLUX_MAX_OFFSET, and under half the sample's own attenuation (a sample much wider than the
    field reads flat edges too). Each row decides alone, whatever the chunk. Blind probes L and
    N: a beam 25 % dimmer by the scan's end was read as a sample past the edges, padded, 1.5-3 dB
    lost, nothing pointing at ``air_columns`` (which gives them back). Not a repair by default:
    blind probe P's plate 1.3x the field, face-on at 44 % of the angles, read the same at I0 1000
    (levelled: 16.21 dB for 22.63, crack fraction 21.7 % for 2.1 %), as did a faint medium wider
    than the field."""
    n = edge_columns(p.shape[2])
    if p.shape[2] < 8 * n or p.shape[0] < 8:
        return np.zeros(p.shape[1], dtype=bool)
    blocks = [p[..., a:b] for a, b in ((0, n), (p.shape[2] - n, p.shape[2]), (n, 2 * n),
                                        (p.shape[2] - 2 * n, p.shape[2] - n))]
    left, right, in_left, in_right = (b.mean(axis=-1, dtype=np.float64) for b in blocks)  # (angle, z)
    pixel = np.median(np.concatenate([blocks[0].std(axis=-1, ddof=1), blocks[1].std(axis=-1, ddof=1)]), axis=0)
    tol = np.maximum(FLUX_FLAT_SIGMAS * pixel * math.sqrt(2 / n), FLUX_FLAT_FLOOR)[None]  # (1, z)
    air_left, air_right = np.abs(in_left - left) <= tol, np.abs(in_right - right) <= tol  # (angle, z)
    # both sides air: their mean where they agree, else the lower (the sample flat on the other);
    # one side air (the sample reaches the other at this angle): that side
    both = np.where(np.abs(left - right) <= tol, (left + right) / 2, np.minimum(left, right))
    offset = np.where(air_left & air_right, both, np.where(air_left, left, right))
    seen = air_left | air_right
    flat = seen.mean(axis=0) >= 0.9
    for z in np.flatnonzero(flat & ~seen.all(axis=0)):  # angles without an air side: from their neighbours
        i = np.flatnonzero(seen[:, z])
        offset[:, z] = np.interp(np.arange(offset.shape[0]), i, offset[i, z])
    rms = np.sqrt(np.mean(offset ** 2, axis=0))
    typical = np.median(np.abs(offset), axis=0)
    contrast = np.percentile(p - offset[..., None].astype(p.dtype), 99, axis=(0, 2))  # the sample above its edges
    return (flat & (rms > np.maximum(FLUX_OFFSET_SIGMAS * pixel / math.sqrt(2 * n), FLUX_OFFSET_FLOOR))
            & (typical < FLUX_MAX_OFFSET) & ((contrast >= SAMPLE_OVER_EDGES * typical) | (contrast <= tol[0])))


def edge_columns(n_columns: int) -> int:
    """The outer detector columns per side the hints and the noise check take as air on a
    detector ``n_columns`` wide: max(4, n_columns/32)."""
    return max(4, n_columns // 32)


def _air_level(p: np.ndarray, n_columns: int, axis) -> np.ndarray:
    """The line integral air reads in p (angle, z, col), from the means over ``axis`` of the
    outer ``n_columns`` per side: their mean where they agree within AIR_SIDES_AGREE, else the
    lower one (the sample reached the other side)."""
    left = p[..., :n_columns].mean(axis=axis, dtype=np.float64)
    right = p[..., -n_columns:].mean(axis=axis, dtype=np.float64)
    return np.where(np.abs(left - right) < AIR_SIDES_AGREE, (left + right) / 2, np.minimum(left, right))


def remove_stripes(p: np.ndarray, method: str) -> None:
    """In place: stripes out of line integrals p (angle, z, col), one row's sinogram (angle, col)
    at a time (so the result does not depend on how rows are chunked), by a STRIPE_METHODS name.

    "mean": a full stripe (a column whose gain drifted from the flats', or one the flats' own
    noise left) adds the same offset to a column at every angle, so each column loses its
    mean over the angles minus the median of that mean over :func:`mean_filter_size`
    neighbouring columns. The median keeps monotonic profiles exactly; a thin shell centred on
    the rotation axis is the one structure it takes for a ring. "sorting" and "all": algotom's
    functions with their median widths scaled to the detector (:func:`stripe_filter_size`;
    algotom's defaults, 21 and 51 columns, suit 2k-px detectors and took 3 dB off a clean
    128-px scan). Where "all" finds a row too smooth to judge large stripes by (algotom refuses
    noise-free data), that row gets "sorting" alone.
    """
    from scipy.ndimage import median_filter

    if problem := stripe_method_problem(method):
        raise ValueError(problem)
    if method == "mean":
        m = p.mean(axis=0, dtype=np.float64)  # (z, col)
        p -= (m - median_filter(m, size=(1, mean_filter_size(p.shape[2])), mode="nearest")).astype(p.dtype)
        return
    from algotom.prep import removal

    size = stripe_filter_size(p.shape[2])
    with np.errstate(divide="ignore", invalid="ignore"):  # algotom's ratios over flat columns
        for z in range(p.shape[1]):
            if method == "sorting":
                p[:, z, :] = removal.remove_stripe_based_sorting(p[:, z, :], size=size)
                continue
            try:
                p[:, z, :] = removal.remove_all_stripe(p[:, z, :], la_size=2 * size + 1, sm_size=size)
            except ValueError:  # algotom finds no noise to set its large-stripe threshold by
                p[:, z, :] = removal.remove_stripe_based_sorting(p[:, z, :], size=size)


def stripe_method_problem(method: str) -> str | None:
    """Why ``method`` cannot remove stripes here (not a STRIPE_METHODS name, or algotom is not
    installed for "sorting"/"all"), or None."""
    if method not in STRIPE_METHODS:
        return f"stripe removal must be one of {', '.join(STRIPE_METHODS)}, got {method!r}"
    if method != "mean" and importlib.util.find_spec("algotom") is None:
        return f"stripe removal '{method}' needs algotom (pip install 'flytomo[stripes]'); 'mean' needs nothing more"
    return None


def stripe_filter_size(n_columns: int) -> int:
    """Odd median width (columns) of "sorting" and "all" on a detector n_columns wide: about
    n_columns / 100, at least 3 (21 at 2048 px, Vo et al.'s default; 5 at 512, 3 at 128)."""
    return _odd(max(3, round(n_columns / 100)))


def mean_filter_size(n_columns: int) -> int:
    """Odd median width (columns) of "mean": about n_columns / 50, at least 5 (5 at 128 px,
    11 at 512, 41 at 2048)."""
    return _odd(max(5, round(n_columns / 50)))


def _odd(n: int) -> int:
    return n + 1 - n % 2


def dropped_frames(p: np.ndarray) -> np.ndarray:
    """(angle, z) bool: in each row z of p (angle, z, col), the projections whose mean over the
    columns differs from the running median M (DROPPED_FRAME_WINDOW projections, acquisition
    order) of those means by more than DROPPED_FRAME_STEP + DROPPED_FRAME_SHARE·|M|, or whose
    least attenuated rays (2nd percentile over the columns) lie above the row's median of them
    by more than DROPPED_FRAME_GROSS (plus the share): a run of dark frames too long for the
    running median (lost beam darkens every ray; a sample turning edge-on only those through it). Smooth
    changes (a sample wider than the field of view) and steps (a holder entering it) pass; an
    isolated frame of no beam or a detector glitch does not. Row by row, so that a slice's
    repair does not depend on which rows were read with it (``--chunk-rows``)."""
    from scipy.ndimage import median_filter

    n = p.shape[0]
    if n < DROPPED_FRAME_WINDOW:
        return np.zeros(p.shape[:2], dtype=bool)
    means = p.mean(axis=2, dtype=np.float64)
    running = median_filter(means, size=(DROPPED_FRAME_WINDOW, 1), mode="nearest")
    local = np.abs(means - running) > DROPPED_FRAME_STEP + DROPPED_FRAME_SHARE * np.abs(running)
    # a run of frames longer than half the window (the beam lost for a while, a little stray
    # light left) moves the running median with it. Lost beam darkens every ray, the least
    # attenuated too; a sample turning edge-on darkens only the rays through it: so a frame
    # whose least attenuated rays (2nd percentile) lie that far above the row's usual is no
    # projection, however many run together
    least = np.percentile(p, 2, axis=2)
    usual = np.median(least, axis=0, keepdims=True)
    gross = least - usual > DROPPED_FRAME_GROSS + DROPPED_FRAME_SHARE * np.abs(usual)
    return local | _entered_by_steps(gross, least, DROPPED_FRAME_GROSS / 2)


def _level_beam_dips(p: np.ndarray, skip: np.ndarray, where: object, hint: bool = True) -> None:
    """In place: the beam dips of p (angle, z, col) (:func:`beam_steps`, frames in ``skip``
    left out) levelled, with a DataRepairWarning naming the frames and the dip; a step that does
    not come back in half the rows or more, a DataHintWarning where ``hint``."""
    offsets, unmatched = beam_steps(p, skip)
    if offsets.any():
        p -= offsets[:, :, None]
        frames = np.flatnonzero(np.abs(offsets).max(axis=1) > 0)
        deepest = float(offsets.flat[np.argmax(np.abs(offsets))])  # −log of the beam's share
        change = (f"{100 * (1 - np.exp(-deepest)):.0f}% dimmer" if deepest > 0
                  else f"{100 * (np.exp(-deepest) - 1):.0f}% brighter")
        warnings.warn(f"{where or 'scan'}: projections {_frame_ranges(frames)} saw a beam {change} than those "
                      "around them (every ray stepped alike, and back): each is levelled to its neighbours",
                      DataRepairWarning, stacklevel=3)
    lit = np.flatnonzero(np.abs(p).max(axis=(0, 2)) > 0)  # rows that measured something
    common = unmatched[:, lit].sum(axis=1) * 2 >= max(lit.size, 1)  # a beam steps in every row
    if hint and common.any():
        frames = np.flatnonzero(common)
        warnings.warn(f"{where or 'scan'}: the beam's level stepped at projection(s) {_frame_ranges(frames)} "
                      "(every ray alike) and did not step back: not levelled, since which level the flats saw is "
                      "unknown; where the sample stays inside the field of view, --air-columns N levels each "
                      "projection by its outer N columns", DataHintWarning, stacklevel=3)


def _frame_ranges(frames: np.ndarray) -> str:
    """'3, 80-97, …': sorted frame indices as runs, the first 6 runs."""
    runs = np.split(frames, np.flatnonzero(np.diff(frames) > 1) + 1)
    text = ", ".join(str(r[0]) if r.size == 1 else f"{r[0]}-{r[-1]}" for r in runs[:6])
    return text + (f", … ({frames.size} in all)" if len(runs) > 6 else "")


def beam_steps(p: np.ndarray, skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Beam dips after the flats: ((angle, z) offsets to subtract from p (angle, z, col), (angle, z)
    bool of unmatched steps). In each row, the frames (acquisition order, those in ``skip`` left
    out) between a jump of the beam's level and the jump that brings it back. A dimmer beam adds
    the same −log(k) to every ray of a frame, so a jump is a boundary between two frames where the
    median over the columns of their difference leaves the boundaries around it by more than
    BEAM_STEP_MIN and BEAM_STEP_SIGMAS times the row's frame-to-frame spread, with its 20th and
    80th percentiles on the same side (every column moved alike, not the part a sample turned
    through), and the boundaries on either side moved alike (a step, not a ramp: a plate turning
    edge-on). A jump stands alone, or beside the opposite one (a single dim frame). Jumps whose sum
    comes back to zero (within BEAM_STEP_CLOSE of the largest, or BEAM_STEP_CLOSE_SIGMAS times
    the spread), BEAM_STEP_CHAIN of them at most, close a dip, whose frames are
    levelled to those around it; a jump that nothing brings back is only reported (which level
    the flats saw is unknown). Row by row, so that the result does not depend on the chunk."""
    from scipy.ndimage import median_filter

    n, nz, _ = p.shape
    offsets = np.zeros((n, nz), dtype=np.float32)
    unmatched = np.zeros((n, nz), dtype=bool)
    for z in range(nz):
        frames = np.arange(n) if skip is None else np.flatnonzero(~skip[:, z])
        if frames.size < 8:
            continue
        lo, mid, hi = np.percentile(np.diff(p[frames, z, :], axis=0), [20, 50, 80], axis=1)  # (boundary,)
        natural = median_filter(mid, size=BEAM_STEP_WINDOW, mode="nearest")
        spread = 1.4826 * float(np.median(np.abs(mid - natural)))
        least = max(BEAM_STEP_MIN, BEAM_STEP_SIGMAS * spread)
        alike = (np.sign(lo) == np.sign(hi)) & (np.minimum(np.abs(lo), np.abs(hi)) > 0.25 * np.abs(mid - natural))
        candidate = np.flatnonzero(np.abs(mid - natural) > least)
        jumps: list[tuple[int, float]] = []  # (boundary, step)
        for run in np.split(candidate, np.flatnonzero(np.diff(candidate) > 1) + 1):
            if run.size == 0 or run.size > 2 or not alike[run].all():
                continue  # a ramp, or a part of the columns
            if run.size == 2 and np.sign(mid[run[0]]) == np.sign(mid[run[1]]):
                continue
            before = mid[run[0] - 1] if run[0] > 0 else None
            after = mid[run[-1] + 1] if run[-1] + 1 < mid.size else None
            if before is not None and after is not None and abs(before - after) > BEAM_STEP_RAMP * least:
                continue
            around = np.mean([v for v in (before, after) if v is not None])
            jumps += [(int(k), float(mid[k] - around)) for k in run]
        i = 0
        while i < len(jumps):
            total, closed = 0.0, None
            for j in range(i, min(i + BEAM_STEP_CHAIN, len(jumps))):
                total += jumps[j][1]
                if j > i and abs(total) <= max(BEAM_STEP_CLOSE * max(abs(step) for _, step in jumps[i:j + 1]),
                                               BEAM_STEP_CLOSE_SIGMAS * spread):
                    closed = j
                    break
            if closed is None:  # and the opposite jump after it (its way back, too far off to close it)
                pair = i + 1 < len(jumps) and jumps[i + 1][1] * jumps[i][1] < 0
                for k, _ in jumps[i:i + 1 + pair]:
                    unmatched[frames[k + 1], z] = True
                i += 1 + pair
                continue
            level = np.zeros(frames.size, dtype=np.float64)
            for k, step in jumps[i:closed + 1]:  # what is left of the sum shared out: in and out alike
                level[k + 1:] += step - total / (closed + 1 - i)
            offsets[frames, z] += level.astype(np.float32)
            i = closed + 1
    return offsets, unmatched


def _entered_by_steps(runs: np.ndarray, values: np.ndarray, step: float) -> np.ndarray:
    """(angle, z) bool: the runs of True in each column of ``runs`` that ``values`` enters and
    leaves by a jump of more than ``step`` at each end the scan has (the beam lost and back);
    a run reached gradually (a wide plate turning edge-on) is dropped from the result."""
    out = np.zeros_like(runs)
    n = runs.shape[0]
    for z in np.flatnonzero(runs.any(axis=0)):
        edges = np.diff(np.concatenate([[0], runs[:, z].astype(np.int8), [0]]))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):  # run a..b-1
            ends = ([values[a, z] - values[a - 1, z]] if a > 0 else []) + \
                   ([values[b - 1, z] - values[b, z]] if b < n else [])
            if ends and min(ends) > step:
                out[a:b, z] = True
    return out


def _replace_frames(p: np.ndarray, bad: np.ndarray) -> None:
    """In place: in each row z of p (angle, z, col), each line p[a, z] with bad[a, z] becomes
    the mean of that row's nearest good lines before and after it (the one there is, at the ends)."""
    for z in np.flatnonzero(bad.any(axis=0)):
        good = np.flatnonzero(~bad[:, z])
        for a in np.flatnonzero(bad[:, z]):
            pos = np.searchsorted(good, a)
            near = [good[i] for i in (pos - 1, pos) if 0 <= i < good.size]
            p[a, z] = np.mean([p[i, z] for i in near], axis=0)


def _repair(p: np.ndarray, dead: np.ndarray, nonfinite: np.ndarray) -> None:
    """In place: fill dead (z, col) pixels for all angles and non-finite (angle, z, col) samples
    of p (angle, z, col) from the nearest good columns of the same row and angle."""
    for z in range(p.shape[1]):
        extra = nonfinite[:, z, :] & ~dead[z][None]
        lines = np.nonzero(extra.any(axis=1))[0]
        if dead[z].any():
            _fill(p[:, z, :], dead[z])
        for a in lines:
            _fill(p[a : a + 1, z, :], dead[z] | extra[a])


def _fill(lines: np.ndarray, bad: np.ndarray) -> None:
    """In place: columns ``bad`` of every line (m, n) by linear interpolation between the
    nearest good columns (the nearest one beyond the edges; zero if the row has none)."""
    good = np.nonzero(~bad)[0]
    idx = np.nonzero(bad)[0]
    if good.size == 0:
        lines[:, idx] = 0.0
        return
    pos = np.searchsorted(good, idx)
    left = good[np.clip(pos - 1, 0, good.size - 1)]
    right = good[np.clip(pos, 0, good.size - 1)]
    span = np.where(right != left, right - left, 1)
    w = np.clip((idx - left) / span, 0.0, 1.0).astype(lines.dtype)
    lines[:, idx] = (1 - w) * lines[:, left] + w * lines[:, right]
