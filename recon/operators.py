"""Parallel-beam projector R, its exact adjoint, the fly-scan arc blur B and R̄ = R·B.

Every operator is a sparse matrix (torch CSR) applied to a batch of slices at once: a
batch of B slices is the B columns of one dense matrix, so one sparse×dense product serves
the whole batch. Orientation and pixel conventions: :mod:`recon.geometry`.

- ``Projector``: Joseph's ray-driven projector (linear interpolation along the minor axis,
  weight = ray length per step), the same discretisation as astra-toolbox's ``linear``
  parallel-beam CPU projector. The adjoint is the stored transpose, so the pair is exact.
- ``ArcBlur``: B = (1/Δθ) ∫ Rot_δ dδ over δ ∈ [−Δθ/2, Δθ/2], rotations averaged over sub-angles
  spaced at most ``arc_step`` pixels apart along the arc at the edge, each sampled along the
  pixel's arc with the arc's own variance (no radial smoothing).
- ``FlyScanProjector``: R̄ = R·B (DESIGN.md: rotating the object by δ and projecting at θ
  equals projecting at θ+δ), adjoint Bᵀ·Rᵀ. Costs one extra sparse product with few taps.
- ``SubAngleProjector``: the seed's reference, the mean of R over n sub-angles θ_j + δ_i.

A projector is built in angle blocks of at most :data:`BUILD_BLOCK_BYTES` (bounded memory while
it is built). One larger than ``max_cached_bytes`` (default 4 GB, ``FLYTOMO_OPERATOR_CACHE_GB``)
is not stored (an :class:`OperatorCostWarning` says so): on a GPU its rays are then sampled at
every use (``torch.nn.functional.grid_sample`` at Joseph's points, bilinear with one
coordinate whole = Joseph's linear interpolation; the adjoint is grid_sample's exact
backward); on a CPU they are traced at every use by compiled loops (:mod:`recon.kernels`,
numba), or, where numba is not installed, its blocks are rebuilt at every use (both measured
faster there than sampling: docs/benchmarks.md, "Projectors too large to keep").
"""
from __future__ import annotations

import math
import os
import warnings
from functools import lru_cache
from typing import Any, Iterator

import numpy as np
import torch

from recon.errors import FlytomoError
from recon.geometry import ScanGeometry

Tensor = torch.Tensor
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

#: matrices above this size (bytes, values + indices, both directions) are not cached whole,
#: unless FLYTOMO_OPERATOR_CACHE_GB says otherwise (:func:`operator_cache_bytes`)
DEFAULT_MAX_CACHED_BYTES = int(4e9)
#: the cache may take at most this share of the machine's memory
CACHE_MEMORY_SHARE = 0.8
#: angle blocks are built at most this large (bytes as estimated, both directions)
BUILD_BLOCK_BYTES = int(512e6)
#: ways to apply a projector too large to keep: trace its rays in compiled loops (numba), rebuild
#: its sparse blocks, or sample its rays with grid_sample
UNCACHED_MODES = ("traced", "rebuilt", "sampled")
#: where rays are traced, keeping the matrix pays only for many iterations (blind probe U, 640 px x 480
#: angles: FBP 34 s kept against 11 s traced; the build cost about 6 traced MLEM iterations)
TRACED_KEEP_NOTE = "; building it costs about 6 traced MLEM iterations: worth it for MLEM, not for FBP"
#: elements of grid_sample's output per call when rays are sampled (bounds its memory)
SAMPLED_ELEMENTS = 1 << 25


def default_uncached_mode(device: torch.device) -> str:
    """How a projector too large to keep is applied on ``device``: sampled on a GPU, traced on a
    CPU where numba is installed, else rebuilt. Asked of every projector, kept or not: numba is
    looked for, not imported (0.3 s), until rays are traced."""
    from importlib.util import find_spec

    if device.type != "cpu":
        return "sampled"
    return "traced" if find_spec("numba") is not None else "rebuilt"


def physical_memory_bytes() -> int | None:
    """This machine's memory (bytes), or None where the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def operator_cache_bytes() -> int:
    """The projector cache (bytes): ``FLYTOMO_OPERATOR_CACHE_GB`` (GB) where set, else
    DEFAULT_MAX_CACHED_BYTES. FlytomoError (one line) where it is not a number ≥ 0 or more than
    CACHE_MEMORY_SHARE of this machine's memory (blind probe S: 40 GB on a 24 GB machine, a
    traceback from an allocation deep in the projector)."""
    text = os.environ.get("FLYTOMO_OPERATOR_CACHE_GB")
    if text is None or not text.strip():
        return DEFAULT_MAX_CACHED_BYTES
    try:
        gb = float(text)
    except ValueError:
        gb = float("nan")
    if not gb >= 0:
        raise FlytomoError(None, f"FLYTOMO_OPERATOR_CACHE_GB must be a number of GB, 0 or more, got {text!r}")
    memory = physical_memory_bytes()
    if memory is not None and gb * 1e9 > CACHE_MEMORY_SHARE * memory:
        raise FlytomoError(None, f"FLYTOMO_OPERATOR_CACHE_GB={text.strip()} is more than this machine's memory allows "
                                 f"({memory / 1e9:.0f} GB in all; at most {CACHE_MEMORY_SHARE * memory / 1e9:.0f})")
    return int(gb * 1e9)


def projector_bytes(n_angles: int, n_columns: int, image_size: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of a kept projector matrix, both directions: ≤ 2n non-zeros per ray, each a 4-byte
    index and a value (an upper bound, as :class:`Projector` budgets it)."""
    return 2 * n_angles * n_columns * 2 * image_size * (4 + torch.finfo(dtype).bits // 8)


class OperatorCostWarning(UserWarning):
    """A projector too large to keep: applied at every use without a stored matrix."""


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


def _joseph_samples(geometry: ScanGeometry, angles: np.ndarray, offsets: np.ndarray,
                    device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Joseph's sample points for ``angles`` as a grid_sample grid (1, A·nd, n, 2) (x, y in
    [−1, 1], align_corners) and the ray length per step (A·nd,): the points and weights of
    :func:`_joseph_block`, one coordinate of each point a whole pixel index."""
    n, nd = geometry.image_size, geometry.n_columns
    half = (n - 1) / 2.0
    f64 = dict(dtype=torch.float64, device=device)
    theta = torch.as_tensor(np.asarray(angles, dtype=np.float64), **f64)
    c, s = torch.cos(theta), torch.sin(theta)
    along_x = (s.abs() >= c.abs())[:, None, None]  # step over columns, interpolate rows
    k, d = torch.where(along_x[:, 0, 0], c, -s), torch.where(along_x[:, 0, 0], s, c)
    u = (torch.arange(nd, **f64) - geometry.center)[None, :] - torch.as_tensor(np.asarray(offsets), **f64)[:, None]
    steps = torch.arange(n, **f64) - half
    t = (u[:, :, None] - steps * k[:, None, None]) / d[:, None, None]  # (A, nd, n)
    whole = (steps + half).expand_as(t)
    row = torch.where(along_x, half - t, whole)
    col = torch.where(along_x, whole, t + half)
    scale = 2.0 / max(n - 1, 1)
    grid = torch.stack([col * scale - 1.0, row * scale - 1.0], dim=-1).reshape(1, -1, n, 2)
    return grid.to(dtype), (1.0 / d.abs()).repeat_interleave(nd).to(dtype)


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
                 max_cached_bytes: int | None = None, angle_block: int | None = None,
                 angles: np.ndarray | None = None, offsets: np.ndarray | None = None,
                 uncached: str | None = None) -> None:
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
        approx_bytes = projector_bytes(self.angles.size, nd, n, dtype)
        if max_cached_bytes is None:
            max_cached_bytes = operator_cache_bytes()
        self.cached = approx_bytes <= max_cached_bytes
        if uncached is None:
            uncached = default_uncached_mode(self.device)
        if uncached not in UNCACHED_MODES:
            raise ValueError(f"uncached must be one of {UNCACHED_MODES}, got {uncached!r}")
        if uncached == "traced" and self.device.type != "cpu":
            raise ValueError("uncached='traced' runs on the CPU only")
        self.uncached = uncached
        self.sampled = not self.cached and uncached == "sampled"  # applied by grid_sample, never built
        self.traced = not self.cached and uncached == "traced"  # applied by compiled loops, never built
        if angle_block is None:
            block_bytes = min(max_cached_bytes / 4, BUILD_BLOCK_BYTES)
            angle_block = max(1, int(self.angles.size * block_bytes / approx_bytes))
        self.block_edges = list(range(0, self.angles.size, angle_block)) + [self.angles.size]
        if not self.cached:  # the same words for every chunk, so a command line shows them once
            cost = {"sampled": "its rays are sampled at every use (on the GPU)",
                    "traced": "its rays are traced at every use by compiled loops (FBP: about 1 s per slice at 1024 "
                              "columns and 900 angles, 5-10 at 2048 and 1500, on 2 cores, the more rows per chunk the "
                              "less; MLEM about twice that at each of its iterations, 70 by default: for full-size "
                              "scans on a laptop use fbp, or the rrdb method with --rrdb-input fbp)",
                    "rebuilt": "its blocks are rebuilt at every use (numba, which traces its rays instead, is not "
                               "installed), so each chunk of rows costs about as much as building it (a minute at "
                               "1024 columns and 900 angles, 12 at 2048 and 1500), and MLEM twice that at each "
                               "iteration (70 by default: hours per chunk at 1024 columns; fbp, or the rrdb method "
                               "with --rrdb-input fbp, build it once per chunk)"}[uncached]
            memory = physical_memory_bytes()
            keep = ("" if memory is None else
                    f"; FLYTOMO_OPERATOR_CACHE_GB={math.ceil(approx_bytes / 1e9)} would keep it (this machine has "
                    f"{memory / 1e9:.0f} GB{TRACED_KEEP_NOTE if uncached == 'traced' else ''})"
                    if approx_bytes <= CACHE_MEMORY_SHARE * memory else
                    f"; this machine's {memory / 1e9:.0f} GB cannot keep it: a node with more memory can "
                    "(FLYTOMO_OPERATOR_CACHE_GB)")
            warnings.warn(f"the projector of {self.angles.size} angles x {nd} columns (the detector with any padding or "
                          f"widening about the axis; ~{approx_bytes / 1e9:.0f} GB) is "
                          f"larger than its cache ({max_cached_bytes / 1e9:g} GB): {cost}; larger chunks of rows pay "
                          f"it less often{keep}", OperatorCostWarning, stacklevel=2)
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

    def _sample_groups(self, batch: int) -> Iterator[tuple[int, Tensor, Tensor]]:
        """(first angle, grid, ray weights) of each group of angles sampled at once for ``batch``
        slices: grid_sample's output stays ≤ SAMPLED_ELEMENTS (:func:`_joseph_samples`)."""
        n, nd = self.geometry.image_size, self.geometry.n_columns
        step = max(1, SAMPLED_ELEMENTS // (max(batch, 1) * nd * n))
        for a0 in range(0, self.angles.size, step):
            grid, w = _joseph_samples(self.geometry, self.angles[a0:a0 + step], self.offsets[a0:a0 + step],
                                      self.device, self.dtype)
            yield a0, grid, w

    def _sampled_forward(self, x: Tensor) -> Tensor:
        """R applied by sampling: (n·n, B) → (n_rays, B)."""
        n, batch = self.geometry.image_size, x.shape[1]
        img = x.T.reshape(1, batch, n, n)
        parts = [torch.nn.functional.grid_sample(img, grid, mode="bilinear", padding_mode="zeros",
                                                 align_corners=True)[0].sum(dim=-1) * w
                 for _, grid, w in self._sample_groups(batch)]
        return torch.cat(parts, dim=1).T.contiguous()

    def _sampled_adjoint(self, y: Tensor) -> Tensor:
        """Rᵀ applied as grid_sample's backward (its exact transpose): (n_rays, B) → (n·n, B)."""
        n, nd, batch = self.geometry.image_size, self.geometry.n_columns, y.shape[1]
        shape_only = torch.empty(1, batch, n, n, device=self.device, dtype=self.dtype)
        out = None
        for a0, grid, w in self._sample_groups(batch):
            rays = (y[a0 * nd:a0 * nd + w.numel()].T * w)[None, :, :, None].expand(1, batch, w.numel(), n)
            term = torch.ops.aten.grid_sampler_2d_backward(rays, shape_only, grid, 0, 0, True, [True, False])[0]
            out = term if out is None else out + term
        return out[0].reshape(batch, n * n).T.contiguous()

    # column layout: (n_pixels, B) ↔ (n_rays, B); the hot path of iterative methods
    def _traced(self, v: Tensor, adjoint: bool) -> Tensor:
        """R v (or Rᵀ v) by :mod:`recon.kernels`, on the threads torch may use."""
        from recon import kernels

        g, arr = self.geometry, v.detach().contiguous().numpy()
        if adjoint:
            out = kernels.joseph_adjoint(arr, self.angles, self.offsets, g.center, g.image_size,
                                         torch.get_num_threads())
        else:
            out = kernels.joseph_forward(arr, self.angles, self.offsets, g.center, g.image_size, g.n_columns,
                                         torch.get_num_threads())
        return torch.from_numpy(out)

    def forward_columns(self, x: Tensor) -> Tensor:
        """(n·n, B) image columns → (n_angles·n_columns, B) sinogram columns."""
        if self.sampled:
            return self._sampled_forward(x)
        if self.traced:
            return self._traced(x, adjoint=False)
        parts = [torch.sparse.mm(self._block(i, False), x) for i in range(len(self.block_edges) - 1)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    def adjoint_columns(self, y: Tensor) -> Tensor:
        """(n_angles·n_columns, B) sinogram columns → (n·n, B) image columns (exact Rᵀ)."""
        if self.sampled:
            return self._sampled_adjoint(y)
        if self.traced:
            return self._traced(y, adjoint=True)
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


#: COO entries built at once for the arc blur (bounds its build's memory: ~24 bytes each)
ARC_BLUR_BAND_ENTRIES = 1 << 23


def _arc_blur_band(n: int, deltas: np.ndarray, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO parts (row, col, val) of the rows of B for output pixel rows r0..r1−1 of an n×n
    slice: the mean over sub-angles δ of the slice rotated by δ.

    Each pixel's arc runs mostly along one axis (columns where |y| ≥ |x|, else rows): a rotated
    sample is interpolated linearly along that axis and taken from the nearest pixel across it,
    and mixed, per pixel, with nearest-pixel sampling in the proportion that gives the kernel the
    arc's own variance along that axis. Bilinear sampling added radial smoothing (variance up to
    1/6 px²) that MLEM then undid as if it were blur: 0.2-1.6 dB under the seed's sub-angle
    operator on 64-128 px slices, which this kernel matches (docs/benchmarks.md, session 43).
    """
    m = deltas.size
    half = (n - 1) / 2.0
    rr, cc = np.meshgrid(np.arange(r0, r1, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
    x, y = cc - half, half - rr
    along_cols = (np.abs(y) >= np.abs(x)).reshape(-1)  # the arc runs mostly along the columns
    out_rows = ((rr - r0) * n + cc).astype(np.int64).reshape(-1)
    base = np.where(along_cols, cc.reshape(-1), rr.reshape(-1))
    along, across = [], []  # per δ: the sample's position along the arc's axis, and across it
    for d in deltas:
        cd, sd = math.cos(d), math.sin(d)
        fr = (half - (x * sd + y * cd)).reshape(-1)
        fc = (x * cd - y * sd + half).reshape(-1)
        along.append(np.where(along_cols, fc, fr))
        across.append(np.rint(np.where(along_cols, fr, fc)).astype(np.int64))
    shift = np.stack(along) - base  # (m, pixels): each sample's displacement along the axis
    arc_var = shift.var(axis=0)
    frac = shift - np.floor(shift)
    linear_var = arc_var + (frac * (1 - frac)).mean(axis=0)  # what linear interpolation adds
    nearest_var = ((np.rint(shift) - shift.mean(axis=0)) ** 2).mean(axis=0)
    spread = linear_var - nearest_var
    ok_spread = spread > 1e-12
    alpha = np.ones_like(arc_var)  # the weight of linear interpolation; nearest takes the rest
    alpha[ok_spread] = np.clip((arc_var - nearest_var)[ok_spread] / spread[ok_spread], 0.0, 1.0)
    rows, cols, vals = [], [], []
    for k in range(m):
        pos = along[k]
        lo = np.floor(pos)
        w = pos - lo
        lo = lo.astype(np.int64)
        for idx, wk in ((lo, alpha * (1 - w)), (lo + 1, alpha * w), (np.rint(pos).astype(np.int64), 1 - alpha)):
            ri = np.where(along_cols, across[k], idx)
            ci = np.where(along_cols, idx, across[k])
            ok = (ri >= 0) & (ri < n) & (ci >= 0) & (ci < n) & (wk > 1e-12)
            rows.append(out_rows[ok])
            cols.append((ri * n + ci)[ok])
            vals.append(wk[ok] / m)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


@lru_cache(maxsize=2)
def _arc_blur_csr(n: int, blur_angle: float, arc_step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR parts (indptr int64, indices int32, data float64) of B for n×n slices, built in
    bands of output rows so that the build holds one band's taps at a time (a 2048² slice at
    1.5° has ~1.3·10⁹ taps before duplicates are summed)."""
    import scipy.sparse

    r_max = (n - 1) / math.sqrt(2.0)
    m = max(1, math.ceil(r_max * blur_angle / arc_step))
    deltas = blur_angle * ((np.arange(m) + 0.5) / m - 0.5)
    band = max(1, ARC_BLUR_BAND_ENTRIES // (4 * m * n))
    indptr, indices, data = [np.zeros(1, dtype=np.int64)], [], []
    for r0 in range(0, n, band):
        r1 = min(n, r0 + band)
        rows, cols, vals = _arc_blur_band(n, deltas, r0, r1)
        part = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=((r1 - r0) * n, n * n)).tocsr()  # sums duplicates
        indptr.append(part.indptr[1:].astype(np.int64) + indptr[-1][-1])
        indices.append(part.indices.astype(np.int32, copy=False))
        data.append(part.data)
    return np.concatenate(indptr), np.concatenate(indices), np.concatenate(data)


class ArcBlur:
    """The fly-scan arc blur B on n×n slices: the mean of the slice rotated by δ ∈ [−Δθ/2, Δθ/2].

    Sub-angles are spaced so that the point farthest from the axis moves at most
    ``arc_step`` pixels between them; each sample interpolated along its arc's axis with the
    arc's own variance (:func:`_arc_blur_band`). ``forward``/``adjoint`` take (B, n, n);
    ``*_columns`` take (n·n, B).
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
