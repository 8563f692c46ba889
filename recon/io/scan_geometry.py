"""The geometry of an open scan: user overrides first, then the file's metadata, then defaults."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from recon.errors import FlytomoError
from recon.geometry import ScanGeometry, default_blur_angle
from recon.io.center import MIN_SAMPLE_SIGNAL, axis_from_centroid, find_center, sample_signal, search_radius_px
from recon.io.metadata import assume
from recon.io.alignment import Jitter, Tilt, band_start, jitter_hint, read_line_integrals, tilt_hint
from recon.io.preprocess import Corrections, DataHintWarning, air_offset_hint, beam_change_rows, rough_line_integrals
from recon.truncation import auto_pad, edge_ratio


def _check_blur(blur: float | None, angles_deg: np.ndarray, where: Any) -> None:
    """Warn where the fly-scan blur is assumed, or cannot be a continuous turn's."""
    angles = np.asarray(angles_deg, np.float64)
    step = float(np.rad2deg(default_blur_angle(np.deg2rad(angles))))
    if blur is None:
        turned = float(np.median(np.abs(np.diff(angles)))) if angles.size > 1 else step
        order = ("" if turned <= 1.5 * step else
                 f" (the exposures are not in turn order: the stage turns {turned:.3g}° from one to the next, as in an "
                 "interlaced or golden-angle scan; the blur is the turn during one exposure)")
        assume(where, f"no blur angle recorded (blur_angle_deg, or exposure_s and rotation_speed_deg_s): the "
                      f"step {step:.3g}° between neighbouring angles is taken, the turn of a continuous scan without "
                      f"dead time{order}; give --blur-angle (reconstruction.blur_angle_deg) where it differs (a step "
                      "scan: 0)")
    elif step > 0 and blur > 1.05 * step:
        assume(where, f"blur angle {blur:g}° is more than the angle step {step:.3g}°: the exposures of one "
                      "continuous turn cannot overlap; is it right (degrees, per exposure)?")


def scan_geometry(reader, *, blur_angle_deg: float | None = None, center: float | str | None = None,
                  rows: tuple[int, int] | None = None, corrections: Corrections | None = None,
                  jitter: Jitter | None = None, tilt: Tilt | None = None,
                  pad_columns: int | str = "auto", check_tilt: bool = True,
                  blur_matters: bool = False, reverse_rotation: bool = False,
                  check_center: bool = False) -> ScanGeometry:
    """Geometry of an open scan: the user's overrides, else the file's metadata, else defaults.

    center : a detector column; ``"auto"``: found from (up to) 16 rows in the middle of the
        scan, whatever ``rows`` (:func:`recon.io.center.find_center`), or, where those rows are air (a
        sample above or below the middle), from 16 rows around the one of 8 evenly spaced
        probes that shows the sample most clearly, with a warning; ``"middle"``: (n_columns − 1)/2;
        ``None`` (the default): ``"auto"`` (a center recorded in the file is not read) — a real axis is
        seldom on the detector's middle column, and half a pixel off doubles every edge of a
        360° scan. Where the search cannot run (too few angles or columns), the middle, with
        a warning. ``corrections``, ``jitter``, ``tilt``: the opt-in repairs, the projection
        shifts (:func:`recon.io.alignment.estimate_jitter`) and the axis's tilt
        (:func:`recon.io.alignment.estimate_tilt`) the reconstruction will undo, undone in the
        rows the axis is found from too; the sideways shifts become the geometry's offsets.
    pad_columns : virtual detector columns per side for a sample wider than the field of view
        (:mod:`recon.truncation`); ``"auto"``: :func:`recon.truncation.auto_pad` of the rows the
        axis is found from (0 where their outer columns are air), with a note when it pads.
    check_tilt : with ``center="auto"`` and no tilt correction asked for, also find the axis
        in two bands near the top and the bottom of the rows and hint at ``--correct-tilt``
        where it leans (:func:`recon.io.alignment.tilt_hint`; two more axis searches, ~1.4 s
        each on 900 angles × 2048 columns: an experiment checks its first scan only).
    blur_matters : the method models the blur (:func:`recon.methods.uses_blur`): warn where no
        blur angle is recorded (the angle step is taken) or it exceeds the angle step.
    check_center : with a center given as a column, also find the axis from the rows and hint where
        it lies more than GIVEN_CENTER_OFF_PX away (:func:`given_center_hint`; a scan new to a store).
    reverse_rotation : the stage turns the other way than the recorded angles grow in flytomo's
        convention (README, Conventions): each angle θ is taken as −θ, so the volume is not
        mirrored (the axis search, blur and weights do not depend on the sense).
    """
    meta = reader.metadata or {}
    blur = blur_angle_deg if blur_angle_deg is not None else meta.get("blur_angle_deg")
    n_angles, n_rows, n_cols = reader.shape
    if corrections is not None:
        corrections.check_detector(n_cols, getattr(reader, "path", None))
    if center is None:
        center = "auto"
    where = getattr(reader, "path", "scan")
    if isinstance(center, (int, float)) and not -0.5 <= center <= n_cols - 0.5:
        raise FlytomoError(where, f"center {center:g} is outside the detector's columns 0-{n_cols - 1}: the rotation "
                                  "axis must project onto the detector (give a column inside, or 'auto')")
    sino, band = None, None
    found = False  # the axis searched for here (not given, not the middle)

    def rows_sino() -> np.ndarray:
        nonlocal sino, band
        if sino is None:
            # the whole scan's rows, not the region asked for: pieces of one scan made with
            # --rows get one axis and one pad, and overlay (the axis moved 0.02 px with the region)
            sino, band = _rows_for_center(reader, where, 0, n_rows, corrections=corrections,
                                          jitter=jitter, tilt=tilt)
        return sino

    if center == "middle":
        center = None
    elif center == "auto":
        rows_sino()  # rows that cannot be read fail the scan here, not the axis search alone
        try:
            # (a sample past the edges: its truncated projections' centre of mass strays anyway)
            if jitter is None and not auto_pad(sino) and (hint := jitter_hint(sino, reader.angles_deg)) is not None:
                warnings.warn(f"{where}: {hint}", DataHintWarning, stacklevel=2)
            center = find_center(sino, reader.angles_deg)
            found = True
            if check_tilt and not (corrections and corrections.correct_tilt):
                middle = ((band[0] + band[1] - 1) / 2, center)  # (row, column) of the axis found
                hint = tilt_hint(reader, rows or (0, n_rows), middle, corrections=corrections, jitter=jitter)
                if hint is not None:
                    warnings.warn(f"{where}: {hint}", DataHintWarning, stacklevel=2)
        except FlytomoError as err:
            assume(where, f"rotation axis not found ({err.problem}): "
                          f"the detector's middle column {(n_cols - 1) / 2:g} is used")
            center = None
        else:
            mid, radius = (n_cols - 1) / 2, search_radius_px(n_cols)
            if not -0.5 <= center <= n_cols - 0.5:  # the search failed (e.g. a few degrees of angles)
                assume(where, f"rotation axis not found (the search ended at column {center:.1f}, off the "
                              f"detector): the detector's middle column {mid:g} is used")
                center = None
            elif _at_search_edge(center, n_cols):
                assume(where, f"rotation axis found at column {center:.2f}, at the edge of the columns searched "
                              f"({mid - radius:g}-{mid + radius:g}): it may be wrong (a sample wider than the field "
                              "of view, or an axis far off the middle?); check the volume, or give the center "
                              "(--center, or center: in the experiment config)")
    elif check_center:  # a column given: where do this scan's own rows put the axis?
        try:
            hint = given_center_hint(rows_sino(), reader.angles_deg, float(center))
        except FlytomoError:  # rows that cannot be read fail the scan's units, not this check
            hint = None
        if hint is not None:
            warnings.warn(f"{where}: {hint}", DataHintWarning, stacklevel=2)
    if pad_columns == "auto":
        pad_columns = _auto_pad(rows_sino, where)
    if sino is not None and (hint := row_total_hint(sino)) is not None:
        warnings.warn(f"{where}: {hint}", DataHintWarning, stacklevel=2)
    elif n_rows > 4 * n_cols:  # detectors are square or wide; a tall, narrow one is seldom real
        warnings.warn(f"{where}: the projections read {n_rows} rows x {n_cols} columns, a detector over 4 times taller "
                      "than wide: are they stored with rows and columns swapped (flytomo reads (angle, row, column))?",
                      DataHintWarning, stacklevel=2)
    elif (hint := swapped_axes_hint(reader)) is not None:
        warnings.warn(f"{where}: {hint}", DataHintWarning, stacklevel=2)
    elif sino is not None and (hint := mirror_pair_hint(sino, reader.angles_deg)) is not None:
        warnings.warn(f"{where}: {hint}", DataHintWarning, stacklevel=2)
    if blur_matters:
        _check_blur(blur, reader.angles_deg, where)
    angles = -np.asarray(reader.angles_deg, dtype=np.float64) if reverse_rotation else reader.angles_deg
    geometry = ScanGeometry.create(angles, n_cols, center=center, blur_angle_deg=blur,
                                   offsets=None if jitter is None else np.asarray(jitter.dx),
                                   pad_columns=int(pad_columns))
    if (hint := wedge_hint(geometry, axis_found=found and not axis_from_centroid(sino, reader.angles_deg))) is not None:
        warnings.warn(f"{where}: {hint}", DataHintWarning, stacklevel=2)
    if (hint := half_acquisition_hint(reader.angles_deg, n_cols, center)) is not None:
        warnings.warn(f"{where}: {hint}", DataHintWarning, stacklevel=2)
    return geometry


#: a centre given for every scan may lie this far (px) from the one a scan's own projections put the
#: axis at before :func:`given_center_hint` speaks (the search finds it within 0.05-0.25 px)
GIVEN_CENTER_OFF_PX = 1.0


def _at_search_edge(center: float, n_cols: int) -> bool:
    """Whether an axis found at column ``center`` lies at the edge of (or past) the columns the
    search covers (the middle ± :func:`recon.io.center.search_radius_px`): no better than a guess."""
    return not -0.5 <= center <= n_cols - 0.5 or abs(center - (n_cols - 1) / 2) > search_radius_px(n_cols) - 1


def given_center_hint(sino: np.ndarray, angles_deg: np.ndarray, given: float) -> str | None:
    """A hint where the centre ``given`` (a column, config ``center: N``) lies more than
    GIVEN_CENTER_OFF_PX from the axis the rows ``sino`` (z, angle, col; those the axis is found from)
    put it at (:func:`recon.io.center.find_center`): an axis that drifts over an in-situ series
    (thermal expansion) while one scan's axis is given for all (blind probe V: 0.8 px a scan, crack
    fractions off by up to 1.4 points, pores that are not there, no word). None where the rows are
    air or the search cannot run or ends at its edge."""
    if sample_signal(sino) < MIN_SAMPLE_SIGNAL:
        return None
    try:
        found = find_center(sino, angles_deg)
    except FlytomoError:
        return None
    if _at_search_edge(found, sino.shape[2]) or abs(found - given) <= GIVEN_CENTER_OFF_PX:
        return None
    return (f"center {given:g} is given, but this scan's projections put the rotation axis at column {found:.2f} "
            f"({found - given:+.1f} px): an axis that drifts over the series (center: auto finds it per scan), or "
            "a center from another scan?")


#: a row's total attenuation may vary this much (std over the angles / mean) before
#: :func:`row_total_hint` speaks: 0.011 at most in ~60 scans of a blind probe (I0 500 to
#: noise-free), 0.16 for a scan stored with rows and columns swapped
ROW_TOTAL_SPREAD = 0.05


def row_total_hint(sino: np.ndarray) -> str | None:
    """A one-line hint where the sample lies inside the field (air at the detector's edges:
    :func:`recon.truncation.auto_pad` 0) and yet the rows' total attenuation changes with the
    angle by more than ROW_TOTAL_SPREAD (median over the rows that hold the sample) of
    sinograms ``sino`` (z, angle, col): in parallel beam it does not, so the projections are
    not (angle, row, column) as read (rows and columns swapped), or the beam was unstable. The
    spread is of the totals' smooth part: their variance less the angle-to-angle noise (half the
    mean squared step), which a photon-starved scan has plenty of (I0 40: 9 % in all, 1.4 %
    smooth; swapped: 15 %)."""
    if auto_pad(sino) or sino.shape[1] < 8:
        return None
    totals = np.asarray(sino, dtype=np.float64).sum(axis=2)  # (z, angle)
    mean = totals.mean(axis=1)
    keep = mean > 0.1 * mean.max() if mean.max() > 0 else np.zeros(mean.shape, bool)
    if not keep.any():
        return None
    t = totals[keep]
    white = np.mean(np.diff(t, axis=1) ** 2, axis=1) / 2  # photon noise, new at every angle; a swap is smooth in it
    spread = float(np.median(np.sqrt(np.maximum(t.var(axis=1) - white, 0.0)) / mean[keep]))
    if spread <= ROW_TOTAL_SPREAD:
        return None
    return (f"each row's total attenuation changes with the angle by {100 * spread:.0f}% (std over mean), where "
            "in parallel beam with the sample inside the field it stays the same: are the projections stored with "
            "rows and columns swapped (flytomo reads (angle, row, column)), or was the beam unstable?")


#: opposite projections mirror each other this much better across the rows than across the
#: columns before :func:`swapped_axes_hint` speaks (residual ratio)
SWAP_MIRROR_RATIO = 0.5


def _mirror_residual(a: np.ndarray, b: np.ndarray, axis: int) -> float:
    """Mean |b − a mirrored along ``axis`` and shifted along it to fit best| over mean |b|."""
    m = np.flip(a, axis=axis)
    pa, pb = m.sum(axis=1 - axis), b.sum(axis=1 - axis)  # profiles along ``axis``
    n = pa.size
    corr = np.fft.irfft(np.fft.rfft(pb, 2 * n) * np.conj(np.fft.rfft(pa, 2 * n)), 2 * n)
    shift = int(np.argmax(corr))
    shift = shift - 2 * n if shift >= n else shift
    return float(np.mean(np.abs(b - np.roll(m, shift, axis=axis))) / max(float(np.mean(np.abs(b))), 1e-12))


def _half_turn_partners(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each projection, the one nearest half a turn away and how far from 180° that is (deg):
    ((A,) indices, (A,) |θj − θi − 180°| mod 360°), by a sorted search (no A² table)."""
    wrapped = np.mod(angles, 360.0)
    order = np.argsort(wrapped)
    ring = wrapped[order]
    k = np.searchsorted(ring, np.mod(wrapped + 180.0, 360.0)) % ring.size  # the next at or after θ + 180°
    after, before = order[k], order[(k - 1) % ring.size]
    gap_after, gap_before = (np.abs(np.mod(wrapped[j] - wrapped, 360.0) - 180.0) for j in (after, before))
    closer = gap_after <= gap_before
    return np.where(closer, after, before), np.where(closer, gap_after, gap_before)


def _half_turn_pair(angles: np.ndarray) -> tuple[int, int, float]:
    """(i, j, d), i ≤ j: the two projections nearest half a turn apart, |θj − θi − 180°| = d (mod 360°)."""
    partner, gap = _half_turn_partners(angles)
    i = int(np.argmin(gap))
    return min(i, int(partner[i])), max(i, int(partner[i])), float(gap[i])


def swapped_axes_hint(reader) -> str | None:
    """A hint where a scan's projections look stored with rows and columns swapped, from two
    projections half a turn apart: in parallel beam one is the other mirrored across the
    columns (about the axis); stored swapped, it is mirrored across the rows. Speaks where the
    row mirror fits SWAP_MIRROR_RATIO better (blind probe O: a square detector, the sample in
    every row, got padding and air-levelling hints but none of the swap). None where no two
    angles lie half a turn apart (within two steps) or the reader cannot read single frames."""
    angles = np.asarray(reader.angles_deg, dtype=np.float64)
    if angles.size < 4 or min(reader.shape[1], reader.shape[2]) < 8:
        return None
    i, j, apart = _half_turn_pair(angles)
    step = float(np.rad2deg(default_blur_angle(np.deg2rad(angles))))
    if apart > max(2 * step, 1e-6) or i == j:
        return None
    try:
        chunk = reader.read(0, reader.shape[1], projections=np.sort([i, j]))
    except TypeError:
        return None
    p = rough_line_integrals(chunk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all NaN: nothing to compare
        p = np.nan_to_num(p - np.nanpercentile(p, 5), nan=0.0)  # (2, z, col), air about 0
    across_columns = _mirror_residual(p[0], p[1], axis=1)
    across_rows = _mirror_residual(p[0], p[1], axis=0)
    if not across_rows < SWAP_MIRROR_RATIO * across_columns:
        return None
    return (f"the projections {angles[i]:g}° and {angles[j]:g}°, half a turn apart, mirror each other across the rows "
            f"(residual {across_rows:.2f}) rather than across the columns ({across_columns:.2f}), as parallel beam "
            "draws them: are they stored with rows and columns swapped (flytomo reads (angle, row, column))?")


#: pairs of projections the recorded angles put half a turn apart may differ (mirrored) this many
#: times more than each first one differs from its nearest neighbour before :func:`mirror_pair_hint`
#: speaks: 0.6-1.1 on correct astra/skimage scans of 80 px at I0 300-20,000; 1.7-4.2 where a half turn
#: was recorded as a whole (angles x2) at I0 2,000-20,000 (at I0 300 noise hides it: 1.2)
MIRROR_PAIR_RATIO = 1.5
#: pairs judged (median), and the fewest that make a judgement
MIRROR_PAIRS, MIN_MIRROR_PAIRS = 16, 8


def mirror_pair_hint(sino: np.ndarray, angles_deg: np.ndarray) -> str | None:
    """A hint where a scan's recorded angles cannot be the angles it turned through, from the rows
    ``sino`` (z, angle, col) the axis was found from: in parallel beam the projection at θ + 180° is
    the one at θ mirrored about the axis, so two projections the angles put half a turn apart match
    mirrored as closely as two neighbours match; angles scaled wrong (a half turn recorded as a whole,
    degrees read as another unit) pair projections that are not opposite. Compares the median
    mirrored difference of up to MIRROR_PAIRS such pairs (within half a step of 180° apart; columns
    smoothed over a pixel against photon noise; best shift, :func:`_mirror_residual`) with that of
    each first one and its nearest neighbour in angle, and speaks above MIRROR_PAIR_RATIO (blind
    probe W: a half turn stored as 0-356.4° reconstructed to a ring and a bar, exit 0). None with
    fewer than MIN_MIRROR_PAIRS pairs (a scan of little more than a half turn)."""
    from scipy.ndimage import gaussian_filter1d

    angles = np.asarray(angles_deg, dtype=np.float64)
    if sino.shape[1] != angles.size or angles.size < 2 * MIN_MIRROR_PAIRS:
        return None
    order = np.argsort(np.mod(angles, 360.0))
    step = float(np.median(np.diff(np.mod(angles, 360.0)[order])))
    if not step > 0:
        return None
    partner, gap = _half_turn_partners(angles)
    pairs = [(i, int(j)) for i, (j, d) in enumerate(zip(partner, gap)) if d <= step / 2 and j > i]
    if len(pairs) < MIN_MIRROR_PAIRS:
        return None
    pairs = pairs[::max(1, len(pairs) // MIRROR_PAIRS)][:MIRROR_PAIRS]
    rank = np.empty(angles.size, dtype=int)
    rank[order] = np.arange(angles.size)
    q = gaussian_filter1d(np.asarray(sino, dtype=np.float64), 1.0, axis=2)
    q = q - np.percentile(q, 5)  # air about 0
    apart = float(np.median([_mirror_residual(q[:, i], q[:, j], axis=1) for i, j in pairs]))
    near = [order[(rank[i] + 1) % angles.size] for i, _ in pairs]  # the next angle up (wrapping)
    beside = float(np.median([_mirror_residual(np.flip(q[:, i], axis=1), q[:, k], axis=1)
                              for (i, _), k in zip(pairs, near)]))
    if not apart > MIRROR_PAIR_RATIO * max(beside, 1e-12):
        return None
    return (f"projections the angles put half a turn apart are not mirror images of each other (they differ "
            f"{apart / beside:.1f}x more than neighbouring projections do, over {len(pairs)} pairs): are the angles "
            f"in the unit and scale the file says (they span {np.ptp(angles):.4g}; a half turn recorded as a whole "
            "one?), or did the sample move during the scan?")


def half_acquisition_hint(angles_deg: np.ndarray, n_cols: int, center: float | None) -> str | None:
    """A one-line hint where a scan of a whole turn has its axis more than a quarter of the
    detector off the middle (an offset-axis, "half-acquisition" scan, whose field is twice the
    detector's): flytomo does not stitch opposite projections into one wide half-turn sinogram,
    so only the field both sides of the axis see comes out right. None otherwise."""
    mid = (n_cols - 1) / 2
    if center is None or abs(center - mid) <= n_cols / 4 or float(np.ptp(angles_deg)) < 350.0:
        return None
    near = min(center, n_cols - 1 - center)
    return (f"the axis (column {center:.1f}) is {near:.0f} px from the detector's edge in a scan of a whole turn: an "
            "offset-axis (half-acquisition) scan? flytomo does not stitch opposite projections into one wide "
            "half-turn sinogram, so only the middle of the field comes out right: stitch them first (as "
            "tomopy's sino_360_to_180 does) and reconstruct the stitched scan")


def wedge_hint(geometry: ScanGeometry, axis_found: bool = False) -> str | None:
    """A one-line hint where the angles leave a wedge of the half turn unseen
    (:attr:`ScanGeometry.wedge_unseen`), else None; ``axis_found``: the axis was found from
    these angles by mirroring half turns, which needs a whole one (a sample inside the field
    gets its axis from its centre of mass instead: :func:`recon.io.center.centroid_center`)."""
    if not geometry.wedge_unseen:
        return None
    wedge = np.rad2deg(geometry.missing_wedge)
    axis = (": the axis found from them may be off, give it if it is known (--center, or center: in the "
            "experiment config)") if axis_found else ""
    return (f"the angles cover {180.0 - wedge:.0f}° of the 180° parallel beam needs, a wedge of {wedge:.0f}° "
            f"is missing: expect streaks along it{axis}")


def _auto_pad(rows_sino, where) -> int:
    """:func:`recon.truncation.auto_pad` of the rows ``rows_sino()`` reads (0 where they cannot
    be read), with a note naming ``where`` when the scan is padded."""
    try:
        sino = rows_sino()
    except FlytomoError:
        return 0
    pad = auto_pad(sino)
    if pad and air_offset_hint(np.asarray(sino).transpose(1, 0, 2)) is not None:
        # the edges read alike at every angle and as flat as air: a beam offset, not a sample (the
        # air hint says so and how to level it); padding still helps MLEM place the offset
        assume(where, f"the outer columns read {edge_ratio(sino):.2f} of the peak at every angle, as flat as air "
                      f"(flats at another beam intensity, not a sample past the edges?): each projection is "
                      f"continued {pad} columns past both edges until they are levelled (--air-columns)")
    elif pad and beam_change_rows(np.asarray(sino).transpose(1, 0, 2)).mean() > 0.5:
        # the edges as flat as air, off zero by what changes with the angle: a beam that changed
        # (blind probe P: a 25 % decay was said to be a sample past the edges)
        assume(where, f"the outer columns read {edge_ratio(sino):.2f} of the peak, as flat as air, by an amount "
                      f"that changes with the angle (a beam that changed after the flats, or a sample wider than the "
                      f"field?): each projection is continued {pad} columns past both edges (--pad-columns; if the "
                      "sample stays inside the field, --air-columns levels them instead)")
    elif pad:
        assume(where, f"the sample reaches past the detector's edges (their attenuation {edge_ratio(sino):.2f} of "
                      f"the peak): each projection is continued {pad} columns past both edges and the slices "
                      "reconstructed that much wider (--pad-columns, or pad_columns: in the experiment config; 0: off); "
                      "attenuation values are then estimates (8-37 % off in a blind probe's cylinders 1.25-1.9x the "
                      "field), shapes and contrasts are kept better")
    return pad


def _rows_for_center(reader, where, z0: int, z1: int, width: int = 16, probes: int = 8,
                     corrections: Corrections | None = None, jitter: Jitter | None = None,
                     tilt: Tilt | None = None):
    """Line integrals (z, angle, col) of ``width`` rows to find the axis from, and those rows
    (a, b): the middle of z0:z1, unless those are air and another of ``probes`` evenly spaced
    4-row probes shows the sample (:func:`recon.io.center.sample_signal`); then the rows around
    the clearest, with a warning naming ``where`` (the scan)."""
    def window(mid: int) -> tuple[int, int]:
        a = band_start(mid - z0, width, (z0, z1))
        return a, min(z1, a + width)

    a, b = window((z0 + z1) // 2)
    def read(a: int, b: int) -> np.ndarray:
        return read_line_integrals(reader, a, b, corrections=corrections, jitter=jitter, tilt=tilt)

    sino = read(a, b)
    if sample_signal(sino) >= MIN_SAMPLE_SIGNAL or z1 - z0 <= width:
        return sino, (a, b)
    mids = [z0 + int((k + 0.5) * (z1 - z0) / probes) for k in range(probes)]
    scores = [sample_signal(read(m, min(z1, m + 4))) for m in mids]
    best = int(np.argmax(scores))
    if scores[best] < MIN_SAMPLE_SIGNAL:
        return sino, (a, b)  # no sample anywhere clear: the middle, as before
    c, d = window(mids[best] + 2)
    assume(where, f"rows {a}:{b} in the middle show no sample; the rotation axis is found from rows {c}:{d}")
    return read(c, d), (c, d)
