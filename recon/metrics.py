"""PSNR and SSIM: the one definition every test, benchmark and model card uses.

Both are computed inside the reconstruction disk (pixels whose centre lies within
(n−1)/2 of the slice centre) with data range = ground-truth max − min.
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def reconstruction_disk(n: int) -> np.ndarray:
    """(n, n) bool: the pixels inside the inscribed circle of an n×n slice."""
    c = np.arange(n) - (n - 1) / 2.0
    return (c[:, None] ** 2 + c[None, :] ** 2) <= ((n - 1) / 2.0) ** 2


def _check(x: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    x = np.asarray(x, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if x.shape != truth.shape or x.ndim != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(f"metrics take two n×n slices of one shape, got {x.shape} and {truth.shape}")
    return x, truth, float(truth.max() - truth.min()) or 1.0


def psnr(x: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of slice ``x`` (n, n) against ``truth`` (n, n)."""
    x, truth, rng = _check(x, truth)
    m = reconstruction_disk(x.shape[0])
    mse = float(np.mean((x[m] - truth[m]) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(rng * rng / mse)


def ssim(x: np.ndarray, truth: np.ndarray) -> float:
    """Mean structural similarity of ``x`` (n, n) against ``truth`` over the disk (7×7 window)."""
    x, truth, rng = _check(x, truth)
    _, smap = structural_similarity(truth, x, data_range=rng, full=True)
    return float(smap[reconstruction_disk(x.shape[0])].mean())
