"""Joseph's projector and its exact transpose as compiled loops (numba), for a CPU projector
too large to keep as a sparse matrix: no matrix is built, each use traces the rays again.

The same operator as :func:`recon.operators._joseph_block` (weights from the same float64
formulas): ``forward`` steps each ray over the columns (rows) of the slice and interpolates
linearly between the two pixels it passes; ``adjoint`` is pixel-driven: a pixel at detector
coordinate κ = x·cosθ + y·sinθ + centre + offset takes from rays k = ⌊κ⌋ and ⌊κ⌋ + 1 the
weights (1/d)·max(0, 1 − |κ − k|/d), d = max(|sinθ|, |cosθ|), which are exactly the entries of
Rᵀ (Joseph's linear interpolation over a step 1/d apart, seen from the pixel). Both read from
copies padded with zeros (no bounds tests in the inner loop) and are parallel over rays
(forward) or slice rows (adjoint), so no two threads write one place. Each call runs the angles
in blocks of about :data:`BLOCK_WORK` ray-pixel steps (a fraction of a second), so that Ctrl-C
and SIGTERM, which Python handles only between calls, stop a large slice promptly; the blocks
add each pixel's terms in the same order as one call would (same bits). Column layout as
:class:`recon.operators.Projector`: images (n·n, B), sinograms (A·nd, B), C-contiguous, float32
or float64.
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


def _compiled(fn):
    """``fn`` compiled in parallel, its machine code cached on disk where numba finds a writable
    place (``__pycache__`` beside this file, else its user cache, ``NUMBA_CACHE_DIR``), so a second
    process loads it instead of compiling again (about 2 s); compiled in each process where none is
    writable (a read-only container without a home)."""
    try:
        return njit(parallel=True, cache=True, fastmath=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(parallel=True, cache=False, fastmath=True)(fn)


#: ray-pixel-slice steps per compiled call (angles x n x n x B): about 0.1-0.3 s on one core
BLOCK_WORK = 1 << 27


@_compiled
def _forward(xp, xp_t, out, cos_a, sin_a, offsets, center, n):  # pragma: no cover - compiled
    """xp, xp_t: the image and its transpose as ((n + 2)·n, B), a zero row above and below."""
    n_angles = cos_a.size
    nd = out.shape[0] // n_angles
    batch = xp.shape[1]
    half = (n - 1) / 2.0
    for ray in prange(n_angles * nd):
        a = ray // nd
        u = (ray - a * nd) - center - offsets[a]
        c, s = cos_a[a], sin_a[a]
        if abs(s) >= abs(c):  # step over columns j, interpolate rows: pixel (lo, j) of x
            k, d, sign, img = c, s, -1.0, xp
        else:  # step over rows j, interpolate columns: pixel (j, lo), row lo of the transpose
            k, d, sign, img = -s, c, 1.0, xp_t
        w = 1.0 / abs(d)
        for j in range(n):
            pos = half + sign * ((u - (j - half) * k) / d)
            lo_f = math.floor(pos)
            f = pos - lo_f
            lo = int(lo_f)
            if lo < -1 or lo >= n:
                continue
            w0, w1, i0 = (1.0 - f) * w, f * w, (lo + 1) * n + j
            for b in range(batch):
                out[ray, b] += w0 * img[i0, b] + w1 * img[i0 + n, b]


@_compiled
def _adjoint(yp, out, cos_a, sin_a, offsets, center, n):  # pragma: no cover - compiled
    """yp: the sinogram as (A·(nd + 2), B), each angle's rays with a zero ray before and after."""
    n_angles = cos_a.size
    nd = yp.shape[0] // n_angles - 2
    batch = yp.shape[1]
    half = (n - 1) / 2.0
    for r in prange(n):
        y_r = half - r
        for a in range(n_angles):
            c, s = cos_a[a], sin_a[a]
            inv = 1.0 / max(abs(s), abs(c))
            base = y_r * s + center + offsets[a]
            first = a * (nd + 2) + 1
            for j in range(n):
                kappa = (j - half) * c + base
                k_f = math.floor(kappa)
                phi = kappa - k_f
                k = int(k_f)
                if k < -1 or k >= nd:
                    continue
                w0 = max(0.0, 1.0 - phi * inv) * inv
                w1 = max(0.0, 1.0 - (1.0 - phi) * inv) * inv
                i0, p = first + k, r * n + j
                for b in range(batch):
                    out[p, b] += w0 * yp[i0, b] + w1 * yp[i0 + 1, b]


def _threads(threads: int) -> int:
    return max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))


def _angle_blocks(n_angles: int, n: int, batch: int) -> list[tuple[int, int]]:
    """[a0, a1) ranges of angles, each about :data:`BLOCK_WORK` steps."""
    step = max(1, BLOCK_WORK // max(1, n * n * batch))
    return [(a, min(n_angles, a + step)) for a in range(0, n_angles, step)]


def joseph_forward(x: np.ndarray, angles: np.ndarray, offsets: np.ndarray, center: float, n: int,
                   n_columns: int, threads: int) -> np.ndarray:
    """R x: image columns (n·n, B) → sinogram columns (A·n_columns, B), rays at ``angles``
    (radians, (A,)) displaced by ``offsets`` (pixels, (A,)), the axis at detector column
    ``center``; on ``threads`` threads."""
    batch = x.shape[1]
    image = x.reshape(n, n, batch)
    padded = [np.pad(v, ((1, 1), (0, 0), (0, 0))).reshape((n + 2) * n, batch) for v in (image, image.transpose(1, 0, 2))]
    out = np.zeros((angles.size * n_columns, batch), dtype=x.dtype)
    cos_a, sin_a, offsets = np.cos(angles), np.sin(angles), np.asarray(offsets, np.float64)
    for a0, a1 in _angle_blocks(angles.size, n, batch):
        with _LOCK:
            numba.set_num_threads(_threads(threads))
            _forward(*padded, out[a0 * n_columns:a1 * n_columns], cos_a[a0:a1], sin_a[a0:a1], offsets[a0:a1],
                     float(center), n)
    return out


def joseph_adjoint(y: np.ndarray, angles: np.ndarray, offsets: np.ndarray, center: float, n: int,
                   threads: int) -> np.ndarray:
    """Rᵀ y: sinogram columns (A·n_columns, B) → image columns (n·n, B), the exact transpose of
    :func:`joseph_forward`."""
    batch = y.shape[1]
    padded = np.pad(y.reshape(angles.size, -1, batch), ((0, 0), (1, 1), (0, 0))).reshape(-1, batch)
    rays = padded.shape[0] // max(1, angles.size)  # per angle, with the two zero rays
    out = np.zeros((n * n, batch), dtype=y.dtype)
    cos_a, sin_a, offsets = np.cos(angles), np.sin(angles), np.asarray(offsets, np.float64)
    for a0, a1 in _angle_blocks(angles.size, n, batch):
        with _LOCK:
            numba.set_num_threads(_threads(threads))
            _adjoint(padded[a0 * rays:a1 * rays], out, cos_a[a0:a1], sin_a[a0:a1], offsets[a0:a1], float(center), n)
    return out
