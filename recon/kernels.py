"""Joseph's projector and its exact transpose as compiled loops (numba), for a CPU projector
too large to keep as a sparse matrix: no matrix is built, each use traces the rays again.

The same operator as :func:`recon.operators._joseph_block` (weights from the same float64
formulas): ``forward`` steps each ray over the columns (rows) of the slice and interpolates
linearly between the two pixels it passes; ``adjoint`` is pixel-driven: a pixel at detector
coordinate κ = x·cosθ + y·sinθ + centre + offset takes from rays k = ⌊κ⌋ and ⌊κ⌋ + 1 the
weights (1/d)·max(0, 1 − |κ − k|/d), d = max(|sinθ|, |cosθ|), which are exactly the entries of
Rᵀ (Joseph's linear interpolation over a step 1/d apart, seen from the pixel). Both add into
``out`` and are parallel over rays (forward) or slice rows (adjoint), so no two threads
write one place. Column layout as :class:`recon.operators.Projector`: images (n·n, B), sinograms
(A·nd, B), C-contiguous, float32 or float64.
"""
from __future__ import annotations

import math
import threading

import numba
import numpy as np
from numba import njit, prange

#: numba's default threading layer may not be entered by two threads at once (the Dask executor's
#: threads): its kernels run one at a time, each on the threads torch is allowed
_LOCK = threading.Lock()


@njit(parallel=True, cache=False)
def _forward(x, x_t, out, cos_a, sin_a, offsets, center, n):  # pragma: no cover - compiled
    n_angles = cos_a.size
    nd = out.shape[0] // n_angles
    batch = x.shape[1]
    half = (n - 1) / 2.0
    for ray in prange(n_angles * nd):
        a = ray // nd
        u = (ray - a * nd) - center - offsets[a]
        c, s = cos_a[a], sin_a[a]
        if abs(s) >= abs(c):  # step over columns j, interpolate rows: pixel (lo, j) of x
            k, d, sign, img = c, s, -1.0, x
        else:  # step over rows j, interpolate columns: pixel (j, lo), row lo of the transposed x_t
            k, d, sign, img = -s, c, 1.0, x_t
        w = 1.0 / abs(d)
        for j in range(n):
            pos = half + sign * ((u - (j - half) * k) / d)
            lo_f = math.floor(pos)
            f = pos - lo_f
            lo = int(lo_f)
            if 0 <= lo < n:
                w0, i0 = (1.0 - f) * w, lo * n + j
                for b in range(batch):
                    out[ray, b] += w0 * img[i0, b]
            if -1 <= lo < n - 1 and f > 0.0:
                w1, i1 = f * w, (lo + 1) * n + j
                for b in range(batch):
                    out[ray, b] += w1 * img[i1, b]


@njit(parallel=True, cache=False)
def _adjoint(y, out, cos_a, sin_a, offsets, center, n):  # pragma: no cover - compiled
    n_angles = cos_a.size
    nd = y.shape[0] // n_angles
    batch = y.shape[1]
    half = (n - 1) / 2.0
    for r in prange(n):
        y_r = half - r
        for a in range(n_angles):
            c, s = cos_a[a], sin_a[a]
            inv = 1.0 / max(abs(s), abs(c))
            base = y_r * s + center + offsets[a]
            first = a * nd
            for j in range(n):
                kappa = (j - half) * c + base
                k_f = math.floor(kappa)
                phi = kappa - k_f
                k = int(k_f)
                p = r * n + j
                w0 = 1.0 - phi * inv
                if w0 > 0.0 and 0 <= k < nd:
                    w0 *= inv
                    for b in range(batch):
                        out[p, b] += w0 * y[first + k, b]
                w1 = 1.0 - (1.0 - phi) * inv
                if w1 > 0.0 and 0 <= k + 1 < nd:
                    w1 *= inv
                    for b in range(batch):
                        out[p, b] += w1 * y[first + k + 1, b]


def _threads(threads: int) -> int:
    return max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))


def joseph_forward(x: np.ndarray, angles: np.ndarray, offsets: np.ndarray, center: float, n: int,
                   n_columns: int, threads: int) -> np.ndarray:
    """R x: image columns (n·n, B) → sinogram columns (A·n_columns, B), rays at ``angles``
    (radians, (A,)) displaced by ``offsets`` (pixels, (A,)), the axis at detector column
    ``center``; on ``threads`` threads."""
    x = np.ascontiguousarray(x)
    x_t = np.ascontiguousarray(x.reshape(n, n, -1).transpose(1, 0, 2)).reshape(n * n, -1)
    out = np.zeros((angles.size * n_columns, x.shape[1]), dtype=x.dtype)
    with _LOCK:
        numba.set_num_threads(_threads(threads))
        _forward(x, x_t, out, np.cos(angles), np.sin(angles), np.asarray(offsets, np.float64), float(center), n)
    return out


def joseph_adjoint(y: np.ndarray, angles: np.ndarray, offsets: np.ndarray, center: float, n: int,
                   threads: int) -> np.ndarray:
    """Rᵀ y: sinogram columns (A·n_columns, B) → image columns (n·n, B), the exact transpose of
    :func:`joseph_forward`."""
    y = np.ascontiguousarray(y)
    out = np.zeros((n * n, y.shape[1]), dtype=y.dtype)
    with _LOCK:
        numba.set_num_threads(_threads(threads))
        _adjoint(y, out, np.cos(angles), np.sin(angles), np.asarray(offsets, np.float64), float(center), n)
    return out
