"""Fixtures for the file-layer tests: a small scan (32 angles × 8 rows × 48 columns) and an
analytic sinogram of discs (exact line integrals, any rotation-axis position)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass
class SmallScan:
    tomo: np.ndarray        # (angle, row, col) counts
    flats: np.ndarray       # (k, row, col)
    darks: np.ndarray       # (k, row, col)
    angles_deg: np.ndarray  # (angle,)
    p: np.ndarray           # (angle, row, col) the line integrals behind tomo


@pytest.fixture
def small_scan() -> SmallScan:
    """Noise-free counts of a known attenuation p: tomo = (flat − dark)·exp(−p) + dark."""
    rng = np.random.default_rng(7)
    n_angles, n_rows, n_cols = 32, 8, 48
    p = rng.uniform(0.0, 2.0, (n_angles, n_rows, n_cols))
    flat = rng.uniform(900.0, 1100.0, (n_rows, n_cols))
    dark = rng.uniform(90.0, 110.0, (n_rows, n_cols))
    flats = np.repeat(flat[None], 4, axis=0).astype(np.float32)
    darks = np.repeat(dark[None], 3, axis=0).astype(np.float32)
    tomo = ((flat - dark)[None] * np.exp(-p) + dark[None]).astype(np.float32)
    angles = np.linspace(0.0, 180.0, n_angles, endpoint=False)
    return SmallScan(tomo, flats, darks, angles, p)


def disc_sinogram(angles_deg: np.ndarray, n_cols: int, center: float, discs, sub: int = 4) -> np.ndarray:
    """(angle, col) line integrals of discs (x0, y0, radius, density) for a rotation axis at
    detector column ``center``; each detector pixel averages ``sub`` point samples."""
    th = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))[:, None, None]
    u = np.arange(n_cols)[None, :, None] + (np.arange(sub)[None, None, :] + 0.5) / sub - 0.5
    out = np.zeros((th.shape[0], n_cols, sub))
    for x0, y0, r, d in discs:
        t = u - center - x0 * np.cos(th) - y0 * np.sin(th)
        out += 2.0 * d * np.sqrt(np.clip(r * r - t * t, 0.0, None))
    return out.mean(axis=-1)


@pytest.fixture
def make_disc_sinogram():
    return disc_sinogram
