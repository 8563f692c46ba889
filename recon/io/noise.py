"""How noisy a scan's line integrals are, measured from its own flat fields.

A detector's counts are proportional to photons: count − dark = g · photons, with Poisson
photons, so in repeated open-beam frames the variance of each pixel is g times its mean (the
photon-transfer method). Each flat frame is first scaled to its row's mean level, so a beam
whose flux moves between frames does not read as noise. With ``photons`` the photons per
pixel in one flat frame, a ray of transmission t carries n = photons · t of them and its line
integral p = −log t has variance ≈ 1/n + dark_var/n² + 1/(k · photons) (the last from the mean
of k flats). :func:`recon.mlem.mlem` stops each slice where its data fit reaches that noise
(the discrepancy principle).

Unknown (NaN) where the flats cannot tell: fewer than two usable frames, or frames without
noise (a simulator's ideal flat, or one frame copied), or a gain outside any detector's, or
where the projections' own outer columns disagree (:func:`checked`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from recon.errors import FlytomoError
from recon.io.preprocess import edge_columns

#: photons per pixel per flat frame a measured gain may imply: outside, the flats are not
#: photon-noise limited (copied frames, a float simulation's ideal flat, smoothing) — unknown
PHOTON_RANGE = (1.0, 1e7)
#: pixels whose variance is over this many times the row's median are left out (hot or
#: unstable pixels; for two frames a chi-square(1) draw passes it with p < 0.003)
OUTLIER_RATIO = 20.0


@dataclass(frozen=True)
class FlatNoise:
    """Per detector row: ``photons`` (z,) photons per pixel in one flat frame (NaN: unknown),
    ``dark_var`` (z,) the dark frames' variance in photons², ``n_flats`` the frames averaged."""

    photons: np.ndarray
    dark_var: np.ndarray
    n_flats: int

    @property
    def known(self) -> np.ndarray:
        """(z,) bool: rows whose noise the flats measured."""
        return np.isfinite(self.photons)

    def rows(self, z0: int, z1: int) -> "FlatNoise":
        return FlatNoise(self.photons[z0:z1], self.dark_var[z0:z1], self.n_flats)


def flat_noise(flats: np.ndarray, darks: np.ndarray) -> FlatNoise:
    """Photons per pixel of each row of ``flats`` (k, z, col) counts, with ``darks`` (m, z, col)
    counts (usable frames only: :func:`recon.io.preprocess.usable_frames`)."""
    f = np.asarray(flats, dtype=np.float64)
    d = np.asarray(darks, dtype=np.float64)
    n_rows = f.shape[1]
    unknown = FlatNoise(np.full(n_rows, np.nan), np.zeros(n_rows), int(f.shape[0]))
    if f.shape[0] < 2 or not d.size:
        return unknown
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels and rows: unknown
        dark = np.nanmean(d, axis=0)  # (z, col)
        dark_var = np.nanvar(d, axis=0, ddof=1) if d.shape[0] >= 2 else np.zeros_like(dark)
        s = f - dark[None]
        level = np.nanmean(s, axis=2, keepdims=True)  # (k, z, 1): each frame's row level
        s = s / level * np.nanmean(level, axis=0, keepdims=True)
        mean = np.nanmean(s, axis=0)  # (z, col)
        var = np.nanvar(s, axis=0, ddof=1)
        lit = np.isfinite(var) & (mean > 0.1 * np.nanmedian(mean, axis=1, keepdims=True))
        lit &= var <= OUTLIER_RATIO * np.nanmedian(np.where(lit, var, np.nan), axis=1, keepdims=True)
        gain = (np.nansum(np.where(lit, var - dark_var, 0.0), axis=1)
                / np.nansum(np.where(lit, mean, 0.0), axis=1))  # (z,): counts per photon
        photons = np.nanmedian(np.where(lit, mean, np.nan), axis=1) / gain
        dvar = np.nanmedian(dark_var, axis=1) / gain ** 2
    ok = np.isfinite(photons) & (gain > 0) & (photons >= PHOTON_RANGE[0]) & (photons <= PHOTON_RANGE[1])
    return FlatNoise(np.where(ok, photons, np.nan), np.where(ok & np.isfinite(dvar), np.maximum(dvar, 0.0), 0.0),
                     int(f.shape[0]))


#: the projections' own noise (differences of neighbouring outer columns) may differ from the
#: flats' prediction by this factor either way; beyond it the flats do not tell the projections'
#: noise (flats averaged on board, a beam profile moving between flats, clipped or copied flats,
#: or a sample in the outer columns) and the row's noise is unknown
AGREE_FACTOR = 2.0


def checked(noise: FlatNoise, p: np.ndarray) -> FlatNoise:
    """``noise`` with the rows whose line integrals ``p`` (z, angle, col) disagree with it made
    unknown: in each row the variance of the differences of neighbouring columns among the
    outer ``max(4, col/32)`` per side, halved, against the variance ``noise`` predicts there
    (the mean over those pixels; an offset or a drift of the beam cancels in the differences)."""
    n = edge_columns(p.shape[2])
    if p.shape[2] < 4 * n or not noise.known.any():
        return noise
    edges = np.concatenate([p[:, :, :n], p[:, :, -n:]], axis=2).astype(np.float64)  # (z, angle, 2n)
    diff = np.diff(edges, axis=2)
    diff = np.delete(diff, n - 1, axis=2)  # not across the two sides
    measured = 0.5 * np.var(diff, axis=(1, 2))
    predicted = np.nanmean(line_integral_variance(edges, noise), axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = measured / predicted
    agree = (ratio >= 1.0 / AGREE_FACTOR) & (ratio <= AGREE_FACTOR)
    return FlatNoise(np.where(agree, noise.photons, np.nan), noise.dark_var, noise.n_flats)


def chunk_noise(chunk) -> FlatNoise:
    """:func:`flat_noise` of a :class:`recon.io.scan.RawChunk`'s usable flats and darks (the
    frames :func:`recon.io.preprocess.line_integrals` averages; its warnings say which not)."""
    from recon.io.preprocess import usable_frames

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flats, darks = usable_frames(chunk.flats, chunk.darks, None, tomo=chunk.tomo)
    return flat_noise(flats, darks)


def scan_photons(reader, rows: tuple[int, int] | None = None, n_rows: int = 4) -> float | None:
    """Photons per pixel in one flat frame of a scan (:class:`recon.io.scan.ScanReader`): the
    median over ``n_rows`` rows in the middle of ``rows`` (default all) of :func:`chunk_noise`;
    None where its flats cannot tell."""
    from recon.io.preprocess import line_integrals

    z0, z1 = rows if rows is not None else (0, int(reader.shape[1]))
    a = max(z0, (z0 + z1) // 2 - n_rows // 2)
    chunk = reader.read(a, min(z1, a + n_rows))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the reconstruction's own read says what is repaired
            p = line_integrals(chunk)
    except FlytomoError:  # rows beyond repair: their units say so; no estimate here
        return None
    photons = checked(chunk_noise(chunk), p).photons
    return float(np.nanmedian(photons)) if np.isfinite(photons).any() else None


def line_integral_variance(p: np.ndarray, noise: FlatNoise, min_transmission: float = 1e-3) -> np.ndarray:
    """Variance (z, angle, col) of line integrals ``p`` (z, angle, col) from the photons of
    ``noise`` (rows of ``p``); NaN in rows of unknown noise."""
    n0 = noise.photons[:, None, None]
    n = n0 * np.exp(-np.clip(p, None, -np.log(min_transmission)))
    return (1.0 / n + noise.dark_var[:, None, None] / n ** 2 + 1.0 / (noise.n_flats * n0)).astype(np.float32)
