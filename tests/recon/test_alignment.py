"""Projection alignment (recon.io.alignment): jitter and axis tilt measured from exact line
integrals of balls whose every exposure is displaced by a known amount, or whose axis leans by
a known angle, and undone the same way however rows are read."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from recon.io.alignment import Jitter, Tilt, estimate_jitter, estimate_tilt, observable_part, read_line_integrals
from recon.io.scan import RawChunk

N_ANGLES, N_ROWS, N_COLS = 90, 40, 64
BALLS = ((6.0, -4.0, 0.0, 11.0, 0.02), (-9.0, 5.0, -6.0, 6.0, 0.03), (2.0, 8.0, 9.0, 5.0, 0.025))


class BallScan:
    """A scan reader of balls (x, y, z, radius, attenuation/px) seen in parallel beam, the
    axis through column ``center`` at row (N_ROWS − 1)/2, leaning ``tilt_deg`` (its column
    grows by tan(tilt) per row), exposure i displaced by (dy[i], dx[i])."""

    def __init__(self, dy: np.ndarray, dx: np.ndarray, balls=BALLS, center: float = 33.2,
                 tilt_deg: float = 0.0) -> None:
        self.path, self.format, self.metadata = Path("balls.h5"), "test", {}
        self.shape = (N_ANGLES, N_ROWS, N_COLS)
        self.angles_deg = np.linspace(0.0, 180.0, N_ANGLES, endpoint=False)
        th = np.deg2rad(self.angles_deg)[:, None, None]
        zd = np.arange(N_ROWS)[None, :, None] - (N_ROWS - 1) / 2 - dy[:, None, None]
        ud = np.arange(N_COLS)[None, None, :] - center - dx[:, None, None]
        phi = np.deg2rad(tilt_deg)  # detector (u, z) → the axis's frame
        u, z = np.cos(phi) * ud - np.sin(phi) * zd, np.sin(phi) * ud + np.cos(phi) * zd
        p = np.zeros(self.shape)
        for x0, y0, z0, r, mu in balls:
            t = u - x0 * np.cos(th) - y0 * np.sin(th)
            p += 2 * mu * np.sqrt(np.clip(r * r - (z - z0) ** 2 - t * t, 0, None))
        self.p = p
        self.flat = np.full((1, N_ROWS, N_COLS), 1000.0, np.float32)
        self.tomo = (1000.0 * np.exp(-p)).astype(np.float32)

    def read(self, z0: int, z1: int) -> RawChunk:
        return RawChunk(self.tomo[:, z0:z1], self.flat[:, z0:z1], 0 * self.flat[:, z0:z1], str(self.path), z0)


def test_jitter_is_measured_to_a_tenth_of_a_pixel():
    """dy 1 px and dx 1.5 px (s.d.) per exposure come back within 0.1 px RMS: dy up to its
    median, dx up to a first harmonic (the sample's orbit, which is not jitter)."""
    rng = np.random.default_rng(11)
    dy, dx = rng.normal(0, 1.0, N_ANGLES), rng.normal(0, 1.5, N_ANGLES)
    scan = BallScan(dy, dx)
    j = estimate_jitter(scan)
    true_y, true_x = observable_part(dy, dx, scan.angles_deg)
    err_y, err_x = np.asarray(j.dy) - true_y, np.asarray(j.dx) - true_x
    assert np.sqrt(np.mean(err_y ** 2)) < 0.1
    assert np.sqrt(np.mean(err_x ** 2)) < 0.2  # 0.13: 1000 photons per pixel
    still = estimate_jitter(BallScan(np.zeros(N_ANGLES), np.zeros(N_ANGLES)))
    assert np.abs(still.dy).max() < 0.05 and np.abs(still.dx).max() < 0.05


def test_undoing_jitter_restores_the_line_integrals_and_is_chunk_independent():
    """Undone with the true shifts, the jittered rows differ from the still scan's by under
    6 % RMS (interpolation across the balls' rims; 29 % as read), and rows read 7 at a time
    equal rows read at once."""
    rng = np.random.default_rng(12)
    dy, dx = rng.normal(0, 1.0, N_ANGLES), rng.normal(0, 1.5, N_ANGLES)
    shaky, still = BallScan(dy, dx), BallScan(np.zeros(N_ANGLES), np.zeros(N_ANGLES))
    j = Jitter(tuple(dy), tuple(dx))
    whole = read_line_integrals(shaky, 0, N_ROWS, jitter=j)
    assert whole.shape == (N_ROWS, N_ANGLES, N_COLS) and whole.dtype == np.float32
    truth = still.p.transpose(1, 0, 2)
    inner = slice(4, N_ROWS - 4)  # rows whose source stays on the detector
    def rms_error(p: np.ndarray) -> float:
        return float(np.sqrt(np.mean((p[inner] - truth[inner]) ** 2) / np.mean(truth[inner] ** 2)))

    assert rms_error(whole) < 0.06
    assert rms_error(read_line_integrals(shaky, 0, N_ROWS)) > 0.25
    pieces = np.concatenate([read_line_integrals(shaky, a, min(N_ROWS, a + 7), jitter=j)
                             for a in range(0, N_ROWS, 7)])
    assert np.array_equal(pieces, whole)


def test_a_sample_wider_than_the_field_of_view_is_not_shifted():
    """A ball wider than the detector: its projected mass changes with the angle, row by row
    too, so neither the centre of mass nor the mass per row says anything; dx and dy stay 0,
    each with a warning naming the file."""
    rng = np.random.default_rng(13)
    big = ((20.0, 0.0, 0.0, 40.0, 0.01),)
    scan = BallScan(rng.normal(0, 1.0, N_ANGLES), rng.normal(0, 1.0, N_ANGLES), balls=big)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        j = estimate_jitter(scan)
    said = [str(w.message) for w in caught]
    assert any(m.startswith("balls.h5: jitter: the sample's projected mass varies by more than 5%") for m in said), said
    assert any(m.startswith("balls.h5: jitter: the sample's mass per row is too even") for m in said), said
    assert not any(j.dx) and not any(j.dy)


def test_a_sample_even_from_row_to_row_is_not_shifted_up_or_down():
    """A tall cylinder (the same slice in every row) under Poisson noise: its mass per row is
    flat, so any up/down shift found would be noise (session 19 applied ~2 px of it to the
    foreign-experiment bench before this check); dy stays 0 with a warning, dx is measured."""
    rng = np.random.default_rng(14)
    dx = rng.normal(0, 1.0, N_ANGLES)
    scan = BallScan(np.zeros(N_ANGLES), dx)
    scan.p[:] = scan.p[:, N_ROWS // 2][:, None, :]
    scan.tomo = rng.poisson(1000.0 * np.exp(-scan.p)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"mass per row is too even to align up and down by"):
        j = estimate_jitter(scan)
    assert not any(j.dy)
    err_x = np.asarray(j.dx) - observable_part(np.zeros(N_ANGLES), dx, scan.angles_deg)[1]
    assert np.sqrt(np.mean(err_x ** 2)) < 0.2  # 0.13: 1000 photons per pixel


def test_jitter_round_trips_through_a_dict():
    j = Jitter((0.5, -0.25), (1.0, 0.0))
    assert Jitter.from_dict(j.to_dict()) == j and Jitter.from_dict(None) is None
    assert "rms 0.71 px across" in j.summary()


def test_axis_tilt_is_measured_and_undone():
    """An axis leaning 2° (1.4 px across the 40 rows): estimate_tilt finds it within 0.15°
    (2.07°), and rows read with it undone are nearer the upright scan's (3.3 % RMS, against 6.0 %
    as read; interpolation across the balls' rims is the rest), the same bits whatever the
    chunking; an upright scan reads under 0.05°, and 20 rows are too few."""
    leaning, upright = BallScan(np.zeros(N_ANGLES), np.zeros(N_ANGLES), tilt_deg=2.0), \
        BallScan(np.zeros(N_ANGLES), np.zeros(N_ANGLES))
    tilt = estimate_tilt(leaning)
    assert abs(tilt.degrees - 2.0) < 0.15 and abs(tilt.column - 33.2) < 0.1, tilt
    still = estimate_tilt(upright)  # noise-free: the bands' own small errors may read as a lean
    assert still is None or abs(still.degrees) < 0.05, still
    few = BallScan(np.zeros(N_ANGLES), np.zeros(N_ANGLES), tilt_deg=2.0)
    with pytest.warns(UserWarning, match=r"tilt: 20 rows are too few to find the axis in 3 bands of 8"):
        assert estimate_tilt(few, rows=(10, 30)) is None
    assert Tilt.from_dict(tilt.to_dict()) == tilt and Tilt.from_dict(None) is None
    true = Tilt(float(np.tan(np.deg2rad(2.0))), (N_ROWS - 1) / 2, 33.2)
    truth = upright.p.transpose(1, 0, 2)
    inner = slice(4, N_ROWS - 4)

    def rms_error(p: np.ndarray) -> float:
        return float(np.sqrt(np.mean((p[inner] - truth[inner]) ** 2) / np.mean(truth[inner] ** 2)))

    whole = read_line_integrals(leaning, 0, N_ROWS, tilt=true)
    assert rms_error(whole) < 0.04 and rms_error(read_line_integrals(leaning, 0, N_ROWS)) > 0.055
    pieces = np.concatenate([read_line_integrals(leaning, a, min(N_ROWS, a + 7), tilt=true)
                             for a in range(0, N_ROWS, 7)])
    assert np.array_equal(pieces, whole)


def test_a_wobbling_stage_gets_a_hint_and_a_steady_one_none():
    """Without --correct-jitter, rows whose centre of mass strays from its sinusoid by more
    than 0.3 px RMS get a hint naming the flag (1 px s.d. sideways here); a still scan (0.00
    px) and a sample wider than the field get none."""
    from recon.io.alignment import jitter_hint

    rng = np.random.default_rng(15)
    shaky = BallScan(np.zeros(N_ANGLES), rng.normal(0, 1.0, N_ANGLES))
    still = BallScan(np.zeros(N_ANGLES), np.zeros(N_ANGLES))
    wide = BallScan(np.zeros(N_ANGLES), rng.normal(0, 1.0, N_ANGLES), balls=((20.0, 0.0, 0.0, 40.0, 0.01),))
    rows = slice(12, 28)
    hint = jitter_hint(shaky.p[:, rows].transpose(1, 0, 2), shaky.angles_deg)
    assert hint is not None and "--correct-jitter" in hint
    assert jitter_hint(still.p[:, rows].transpose(1, 0, 2), still.angles_deg) is None
    assert jitter_hint(wide.p[:, rows].transpose(1, 0, 2), wide.angles_deg) is None


@pytest.mark.parametrize("tilt_deg,hinted", [(0.0, False), (2.0, True), (-2.0, True)])
def test_a_leaning_axis_gets_a_hint_and_an_upright_one_none(tmp_path, tilt_deg, hinted):
    """Without --correct-tilt, the axis found in bands near the top and the bottom of a 64-row
    scan (a cracked phantom) moving more than 1 px over the rows, on one line with the middle
    band's, gets a hint naming the flag (a 2° lean: 2.2 px over 64 rows); an upright scan none;
    with --correct-tilt asked for, no hint."""
    from recon.io import open_scan
    from recon.io.dxchange import write_dxchange
    from recon.io.preprocess import Corrections, DataHintWarning
    from recon.io.scan_geometry import scan_geometry
    from recon.phantoms import make_phantom
    from recon.simulate import simulate_flyscan

    angles = np.arange(90) * 2.0
    scan = simulate_flyscan(make_phantom("cracked", 64, ndim=3, seed=2), angles, 2.0, 5000, seed=1,
                            center=33.0, tilt_deg=tilt_deg)
    path = write_dxchange(tmp_path / "lean.h5", scan.tomo, scan.flats, scan.darks, angles)
    for corrections, expect in ((None, hinted), (Corrections(correct_tilt=True), False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scan_geometry(open_scan(path), corrections=corrections)
        hints = [str(w.message) for w in caught if issubclass(w.category, DataHintWarning)]
        assert bool([h for h in hints if "--correct-tilt" in h]) == expect, hints


def test_a_sample_entering_the_outer_columns_is_not_read_as_jitter():
    """Blind probe O: a particle that reached into the outer columns (the air level) at some
    angles read as 0.46 px of jitter on a steady stage, hinted at --correct-jitter, and undoing
    it cost FBP 6.8 dB. The air level is now the lower side's: no hint, nothing to undo."""
    from recon.io.alignment import jitter_hint

    near_edge = ((24.0, 0.0, 0.0, 6.0, 0.03), (-4.0, 3.0, 2.0, 8.0, 0.02))  # reaches column 63.2 of 0-63
    scan = BallScan(np.zeros(N_ANGLES), np.zeros(N_ANGLES), balls=near_edge)
    assert scan.p[:, :, -2:].max() > 0.1  # in the outer columns at some angles
    j = estimate_jitter(scan)
    assert np.abs(j.dx).max() < 0.1 and np.abs(j.dy).max() < 0.05  # 0.58 px across with the sides' mean
    assert jitter_hint(read_line_integrals(scan, 12, 28), scan.angles_deg) is None


class _Frames:
    """A BallScan's counts, optionally stored with rows and columns swapped, read by frames too."""

    def __init__(self, scan: BallScan, swapped: bool) -> None:
        t = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 1))) if swapped else (lambda a: a)
        self.tomo, self.flat = t(scan.tomo), t(scan.flat)
        self.angles_deg, self.shape = scan.angles_deg, self.tomo.shape

    def read(self, z0: int, z1: int, projections=None) -> RawChunk:
        tomo = self.tomo if projections is None else self.tomo[np.asarray(projections)]
        return RawChunk(tomo[:, z0:z1], self.flat[:, z0:z1], 0 * self.flat[:, z0:z1], "balls.h5", z0)


def test_projections_stored_with_rows_and_columns_swapped_get_a_hint():
    """Blind probe O: a square detector stored (angle, column, row), the sample in every row, got
    padding and air hints but not the swap: two projections half a turn apart mirror each other
    across the columns in parallel beam, across the rows when swapped."""
    from recon.io.scan_geometry import swapped_axes_hint

    scan = BallScan(np.zeros(N_ANGLES), np.zeros(N_ANGLES))
    assert swapped_axes_hint(_Frames(scan, swapped=False)) is None
    hint = swapped_axes_hint(_Frames(scan, swapped=True))
    assert hint is not None and "mirror each other across the rows" in hint and "rows and columns swapped" in hint
    assert swapped_axes_hint(scan) is None  # a reader that cannot read single frames: no hint, no error


def test_a_sample_past_one_edge_at_some_angles_gets_no_sideways_correction():
    """Blind probe P: a disc 4-10 px past one edge at some angles kept its mass within 5 %, and
    its truncated centre of mass was undone as jitter (FBP 24.72 -> 20.69 dB), without a word.
    Where the outermost columns of one side read the sample, dx is 0 and a warning says why."""
    from recon.io.metadata import AssumptionWarning

    past = ((28.0, 0.0, 0.0, 8.0, 0.03), (-4.0, 3.0, 2.0, 8.0, 0.02))  # reaches column 69 of 0-63 at 0°
    scan = BallScan(np.zeros(N_ANGLES), np.zeros(N_ANGLES), balls=past)
    with pytest.warns(AssumptionWarning, match=r"jitter: the sample reaches past the detector's edge at some angles"):
        j = estimate_jitter(scan)
    assert not np.any(j.dx)
