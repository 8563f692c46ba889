"""Parallel-beam projector R, its exact adjoint, the fly-scan arc blur B and R̄ = R·B.

Every operator is a sparse matrix (torch CSR) applied to a batch of slices at once: a
batch of B slices is the B columns of one dense matrix, so one sparse×dense product serves
the whole batch. Orientation and pixel conventions: :mod:`recon.geometry`.

- ``Projector``: Joseph's ray-driven projector (linear interpolation along the minor axis,
  weight = ray length per step), the same discretisation as astra-toolbox's ``linear``
  parallel-beam CPU projector. The adjoint is the stored transpose, so the pair is exact.
- ``ArcBlur``: B = (1/Δθ) ∫ Rot_δ dδ over δ ∈ [−Δθ/2, Δθ/2], a bilinear rotation averaged over
  sub-angles spaced at most ``arc_step`` pixels apart along the arc at the edge.
- ``FlyScanProjector``: R̄ = R·B (DESIGN.md: rotating the object by δ and projecting at θ
  equals projecting at θ+δ), adjoint Bᵀ·Rᵀ. Costs one extra sparse product with few taps.
- ``SubAngleProjector``: the seed's reference, the mean of R over n sub-angles θ_j + δ_i.

Large geometries are split into angle blocks; blocks beyond ``max_cached_bytes`` (default
4 GB, ``FLYTOMO_OPERATOR_CACHE_GB``) are rebuilt each time they are used (bounded memory, much
slower: an :class:`OperatorCostWarning` says so), instead of stored.
"""
from __future__ import annotations

import math
import os
import warnings
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from recon.errors import FlytomoError
from recon.geometry import ScanGeometry

Tensor = torch.Tensor
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

#: matrices above this size (bytes, values + indices, both directions) are not cached whole
DEFAULT_MAX_CACHED_BYTES = int(float(os.environ.get("FLYTOMO_OPERATOR_CACHE_GB", "4")) * 1e9)


class OperatorCostWarning(UserWarning):
    """A projector too large to keep: rebuilt at every use."""


def _pixel_coordinates(n: int) -> tuple[np.ndarray, np.ndarray]:
    """x of each column and y of each row of an n×n slice (pixel units, origin at centre)."""
    c = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    return c, -c  # x(col), y(row)


def _joseph_block(geometry: ScanGeometry, angles: np.ndarray,
                  offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR parts (crow int64, col int32, val float64) of Joseph's projector for ``angles``,
    the sample displaced ``offsets`` (pixels, one per angle) along the detector.

    Rows are rays ordered (angle, detector column); columns are pixels ordered (row, col).
    """
    n, nd = geometry.image_size, geometry.n_columns
    half = (n - 1) / 2.0
    columns = np.arange(nd, dtype=np.float64) - geometry.center  # (nd,)
    steps = np.arange(n, dtype=np.float64) - half  # coordinate of each row/column stepped over
    counts, cols, vals = [], [], []
    for theta, offset in zip(angles, offsets):
        u = columns - offset
        c, s = math.cos(theta), math.sin(theta)
        if abs(s) >= abs(c):  # ray runs mostly along x: step over columns, interpolate rows
            x = steps[None, :]
            y = (u[:, None] - x * c) / s  # (nd, n)
            frac_pos = half - y  # fractional row index
            fixed = np.broadcast_to(np.arange(n), frac_pos.shape)
            weight = 1.0 / abs(s)
            lo = np.floor(frac_pos)
            f = frac_pos - lo
            lo = lo.astype(np.int64)
            idx = np.stack([lo * n + fixed, (lo + 1) * n + fixed], axis=-1)
            inside = np.stack([(lo >= 0) & (lo < n), (lo + 1 >= 0) & (lo + 1 < n)], axis=-1)
        else:  # step over rows, interpolate columns
            y = -steps[None, :]  # row r has y = half - r; steps[r] = r - half
            x = (u[:, None] - y * s) / c
            frac_pos = x + half  # fractional column index
            fixed = np.broadcast_to(np.arange(n), frac_pos.shape)
            weight = 1.0 / abs(c)
            lo = np.floor(frac_pos)
            f = frac_pos - lo
            lo = lo.astype(np.int64)
            idx = np.stack([fixed * n + lo, fixed * n + lo + 1], axis=-1)
            inside = np.stack([(lo >= 0) & (lo < n), (lo + 1 >= 0) & (lo + 1 < n)], axis=-1)
        w = np.stack([(1.0 - f) * weight, f * weight], axis=-1)
        keep = inside & (w > 0)
        keep2 = keep.reshape(nd, -1)
        counts.append(keep2.sum(axis=1))
        cols.append(idx.reshape(nd, -1)[keep2].astype(np.int32))
        vals.append(w.reshape(nd, -1)[keep2])
    crow = np.zeros(len(angles) * nd + 1, dtype=np.int64)
    np.cumsum(np.concatenate(counts), out=crow[1:])
    return crow, np.concatenate(cols), np.concatenate(vals)


def _csr(crow: np.ndarray, col: np.ndarray, val: np.ndarray, shape: tuple[int, int],
         dtype: torch.dtype, device: torch.device, *,
         with_transpose: bool = True) -> tuple[Tensor, Tensor | None]:
    """A CSR matrix and (unless ``with_transpose`` is False) the CSR matrix of its transpose.

    Built with scipy (int32 indices while they fit: 8 bytes per non-zero and direction in
    float32), handed to torch without a copy.
    """
    import scipy.sparse

    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    a = scipy.sparse.csr_matrix((val.astype(np_dtype, copy=False), col, crow), shape=shape)
    at = _to_torch(a.T.tocsr(), device) if with_transpose else None  # CSR of the transpose
    return _to_torch(a, device), at


def _to_torch(m, device: torch.device) -> Tensor:
    return torch.sparse_csr_tensor(torch.from_numpy(m.indptr), torch.from_numpy(m.indices),
                                   torch.from_numpy(m.data), size=m.shape, check_invariants=False).to(device)


def _as_columns(x: Any, shape: tuple[int, int], device: torch.device, dtype: torch.dtype,
                what: str) -> tuple[Tensor, tuple[int, ...]]:
    """(B, *shape) or ``shape`` (a tensor or an array) → (prod(shape), B) contiguous on ``device``
    as ``dtype``, plus the batch shape to restore; FlytomoError naming ``what`` for another shape
    (a sinogram given as (columns, angles) was taken silently)."""
    x = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    if x.dim() not in (2, 3) or tuple(x.shape[-2:]) != tuple(shape):
        raise FlytomoError(None, f"{what} of shape {tuple(x.shape)}: expected {tuple(shape)} or (B, *{tuple(shape)})")
    x = x.to(device, dtype)
    batch = x.shape[:-2]
    cols = x.reshape(-1, shape[0] * shape[1]).T.contiguous()
    return cols, tuple(batch)


class Projector:
    """Joseph parallel-beam projector R for one :class:`ScanGeometry`, batched over slices.

    ``forward``: images (B, n, n) → sinograms (B, n_angles, n_columns), line integrals with
    pixel length 1. ``adjoint``: the exact transpose, sinograms → images. Both accept a
    single 2D array too. Tensors stay on ``device``; dtype float32 or float64.
    """

    def __init__(self, geometry: ScanGeometry, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, *,
                 max_cached_bytes: int = DEFAULT_MAX_CACHED_BYTES, angle_block: int | None = None,
                 angles: np.ndarray | None = None, offsets: np.ndarray | None = None) -> None:
        self.geometry = geometry
        self.device = torch.device(device)
        self.dtype = dtype
        self.angles = geometry.angles if angles is None else np.asarray(angles, dtype=np.float64)
        if angles is None and offsets is None:
            offsets = geometry.ray_offsets
        self.offsets = np.zeros(self.angles.size) if offsets is None else np.asarray(offsets, dtype=np.float64)
        if self.offsets.shape != self.angles.shape:
            raise ValueError(f"{self.offsets.size} offsets for {self.angles.size} angles")
        n, nd = geometry.image_size, geometry.n_columns
        self.n_pixels = n * n
        self.n_rays = self.angles.size * nd
        # ≤ 2n non-zeros per ray, each a 4-byte index and a value, stored in both directions
        approx_bytes = 2 * self.angles.size * nd * 2 * n * (4 + torch.finfo(dtype).bits // 8)
        if angle_block is None:
            angle_block = self.angles.size if approx_bytes <= max_cached_bytes else \
                max(1, int(self.angles.size * max_cached_bytes / approx_bytes / 4))
        self.block_edges = list(range(0, self.angles.size, angle_block)) + [self.angles.size]
        self.cached = approx_bytes <= max_cached_bytes
        if not self.cached:  # the same words for every chunk, so a command line shows them once
            warnings.warn(f"the projector of {self.angles.size} angles x {nd} columns (~{approx_bytes / 1e9:.0f} GB) is "
                          f"larger than its cache ({max_cached_bytes / 1e9:g} GB): its blocks are rebuilt at every "
                          "use, so each chunk of rows and each MLEM iteration costs about as much as building it "
                          "(minutes at 1024 columns); larger chunks of rows pay it less often, and "
                          "FLYTOMO_OPERATOR_CACHE_GB sets the cache where memory allows", OperatorCostWarning,
                          stacklevel=2)
        self._blocks: list[tuple[Tensor, Tensor]] | None = None
        if self.cached:
            self._blocks = [self._build(i) for i in range(len(self.block_edges) - 1)]

    def _build(self, i: int, with_transpose: bool = True) -> tuple[Tensor, Tensor | None]:
        a0, a1 = self.block_edges[i], self.block_edges[i + 1]
        crow, col, val = _joseph_block(self.geometry, self.angles[a0:a1], self.offsets[a0:a1])
        rows = (a1 - a0) * self.geometry.n_columns
        return _csr(crow, col, val, (rows, self.n_pixels), self.dtype, self.device, with_transpose=with_transpose)

    def _block(self, i: int, transpose: bool) -> Tensor:
        """Block i of R (or of Rᵀ); uncached blocks are built for the one direction asked for."""
        if self._blocks is not None:
            return self._blocks[i][transpose]
        return self._build(i, with_transpose=transpose)[transpose]

    # column layout: (n_pixels, B) ↔ (n_rays, B); the hot path of iterative methods
    def forward_columns(self, x: Tensor) -> Tensor:
        """(n·n, B) image columns → (n_angles·n_columns, B) sinogram columns."""
        parts = [torch.sparse.mm(self._block(i, False), x) for i in range(len(self.block_edges) - 1)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    def adjoint_columns(self, y: Tensor) -> Tensor:
        """(n_angles·n_columns, B) sinogram columns → (n·n, B) image columns (exact Rᵀ)."""
        nd = self.geometry.n_columns
        out = None
        for i in range(len(self.block_edges) - 1):
            yb = y[self.block_edges[i] * nd:self.block_edges[i + 1] * nd]
            term = torch.sparse.mm(self._block(i, True), yb.contiguous())
            out = term if out is None else out + term
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, n, n) or (n, n) → sinograms (B, n_angles, n_columns) or (n_angles, n_columns)."""
        n = self.geometry.image_size
        cols, batch = _as_columns(x, (n, n), self.device, self.dtype, "image")
        y = self.forward_columns(cols)
        return y.T.reshape(*batch, self.angles.size, self.geometry.n_columns)

    def adjoint(self, y: Tensor) -> Tensor:
        """Sinograms (B, n_angles, n_columns) → images (B, n, n): the exact transpose of forward."""
        cols, batch = _as_columns(y, (self.angles.size, self.geometry.n_columns), self.device, self.dtype,
                                  "sinogram")
        x = self.adjoint_columns(cols)
        n = self.geometry.image_size
        return x.T.reshape(*batch, n, n)


def _arc_blur_matrix(n: int, blur_angle: float, arc_step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO parts (row, col, val) of B for an n×n slice: the mean over sub-angles δ of the
    slice rotated by δ, each rotated sample interpolated bilinearly.

    Bilinear sampling adds a little radial smoothing (variance ≈ 1/6 px² where arcs are
    longer than a pixel); nearest-pixel sampling halves it but leaves arcs shorter than a
    pixel unblurred, and measured worse against the sub-angle reference (docs/benchmarks.md).
    """
    r_max = (n - 1) / math.sqrt(2.0)
    m = max(1, math.ceil(r_max * blur_angle / arc_step))
    deltas = blur_angle * ((np.arange(m) + 0.5) / m - 0.5)
    half = (n - 1) / 2.0
    rr, cc = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
    x, y = cc - half, half - rr
    out_rows = (rr * n + cc).astype(np.int64).reshape(-1)
    rows, cols, vals = [], [], []
    for d in deltas:
        cd, sd = math.cos(d), math.sin(d)
        xs, ys = x * cd - y * sd, x * sd + y * cd
        fr, fc = half - ys, xs + half
        r0, c0 = np.floor(fr), np.floor(fc)
        wr, wc = fr - r0, fc - c0
        r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
        for ri, ci, w in ((r0, c0, (1 - wr) * (1 - wc)), (r0, c0 + 1, (1 - wr) * wc),
                          (r0 + 1, c0, wr * (1 - wc)), (r0 + 1, c0 + 1, wr * wc)):
            ok = ((ri >= 0) & (ri < n) & (ci >= 0) & (ci < n) & (w > 1e-12)).reshape(-1)
            rows.append(out_rows[ok])
            cols.append((ri * n + ci).reshape(-1)[ok])
            vals.append(w.reshape(-1)[ok] / m)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


@lru_cache(maxsize=8)
def _arc_blur_csr(n: int, blur_angle: float, arc_step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import scipy.sparse

    rows, cols, vals = _arc_blur_matrix(n, blur_angle, arc_step)
    csr = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(n * n, n * n)).tocsr()  # sums duplicates
    return csr.indptr, csr.indices, csr.data


class ArcBlur:
    """The fly-scan arc blur B on n×n slices: the mean of the slice rotated by δ ∈ [−Δθ/2, Δθ/2].

    Sub-angles are spaced so that the point farthest from the axis moves at most
    ``arc_step`` pixels between them; bilinear interpolation. ``forward``/``adjoint`` take
    (B, n, n); ``*_columns`` take (n·n, B).
    """

    def __init__(self, n: int, blur_angle: float, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, arc_step: float = 0.5) -> None:
        self.n = n
        self.blur_angle = float(blur_angle)
        crow, col, val = _arc_blur_csr(n, self.blur_angle, float(arc_step))
        self.matrix, self.matrix_t = _csr(crow, col, val, (n * n, n * n), dtype, torch.device(device))
        self.device, self.dtype = torch.device(device), dtype

    @property
    def nnz(self) -> int:
        return int(self.matrix.values().numel())

    def forward_columns(self, x: Tensor) -> Tensor:
        return torch.sparse.mm(self.matrix, x)

    def adjoint_columns(self, x: Tensor) -> Tensor:
        return torch.sparse.mm(self.matrix_t, x)

    def forward(self, x: Tensor) -> Tensor:
        cols, batch = _as_columns(x, (self.n, self.n), self.device, self.dtype, "image")
        return self.forward_columns(cols).T.reshape(*batch, self.n, self.n)

    def adjoint(self, x: Tensor) -> Tensor:
        cols, batch = _as_columns(x, (self.n, self.n), self.device, self.dtype, "image")
        return self.adjoint_columns(cols).T.reshape(*batch, self.n, self.n)


class FlyScanProjector(Projector):
    """R̄ = R·B: the fly-scan forward model at the cost of R plus one sparse blur."""

    def __init__(self, geometry: ScanGeometry, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, **kwargs) -> None:
        super().__init__(geometry, device, dtype, **kwargs)
        self.blur = ArcBlur(geometry.image_size, geometry.blur_angle, device, dtype)

    def forward_columns(self, x: Tensor) -> Tensor:
        return super().forward_columns(self.blur.forward_columns(x))

    def adjoint_columns(self, y: Tensor) -> Tensor:
        return self.blur.adjoint_columns(super().adjoint_columns(y))


def sub_angle_rays(geometry: ScanGeometry, n_sub: int) -> tuple[np.ndarray, np.ndarray]:
    """(angles, offsets), each (n_angles·n_sub,) ordered (angle, sub-angle): θ_j + δᵢ, δᵢ the
    midpoints of n_sub equal parts of [−Δθ/2, Δθ/2], each with its exposure's offset."""
    deltas = geometry.blur_angle * ((np.arange(n_sub) + 0.5) / n_sub - 0.5)
    return (geometry.angles[:, None] + deltas[None, :]).reshape(-1), np.repeat(geometry.ray_offsets, n_sub)


class SubAngleProjector(Projector):
    """The seed's fly-scan operator: (1/n) Σᵢ R(θ_j + δᵢ), δᵢ the midpoints of n equal parts
    of [−Δθ/2, Δθ/2]. Costs n times R; kept as the reference R̄ is tested against."""

    def __init__(self, geometry: ScanGeometry, n_sub: int, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, **kwargs) -> None:
        self.n_sub = int(n_sub)
        sub, offsets = sub_angle_rays(geometry, self.n_sub)
        super().__init__(geometry, device, dtype, angles=sub, offsets=offsets, **kwargs)
        self.n_rays = geometry.n_angles * geometry.n_columns  # rays of the output sinogram

    def forward_columns(self, x: Tensor) -> Tensor:
        y = super().forward_columns(x)  # (n_angles·n_sub·nd, B), ordered (angle, sub, column)
        nd = self.geometry.n_columns
        return y.reshape(self.geometry.n_angles, self.n_sub, nd, -1).mean(dim=1).reshape(-1, y.shape[-1])

    def adjoint_columns(self, y: Tensor) -> Tensor:
        nd = self.geometry.n_columns
        rep = y.reshape(self.geometry.n_angles, 1, nd, -1).expand(-1, self.n_sub, -1, -1) / self.n_sub
        return super().adjoint_columns(rep.reshape(-1, y.shape[-1]))

    def forward(self, x: Tensor) -> Tensor:
        n = self.geometry.image_size
        cols, batch = _as_columns(x, (n, n), self.device, self.dtype, "image")
        return self.forward_columns(cols).T.reshape(*batch, self.geometry.n_angles, self.geometry.n_columns)

    def adjoint(self, y: Tensor) -> Tensor:
        cols, batch = _as_columns(y, (self.geometry.n_angles, self.geometry.n_columns), self.device, self.dtype,
                                  "sinogram")
        n = self.geometry.image_size
        return self.adjoint_columns(cols).T.reshape(*batch, n, n)
