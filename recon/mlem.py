"""MLEM on line integrals, batched over slices: one algorithm, any projector.

With :class:`~recon.operators.Projector` (R) it is the seed's naive MLEM; with
:class:`~recon.operators.FlyScanProjector` (R̄ = R·B) it is the seed's modified MLEM.
Update (per slice, all slices at once as columns): x ← x · Aᵀ(y / Ax) / Aᵀ1.
"""
from __future__ import annotations

from typing import Callable

import torch

from recon.operators import Projector

#: default iteration counts, chosen on validation phantoms at the seed's Table-1 settings
#: (512², 120 angles, 1.5°, I0 = 2000; docs/benchmarks.md, "MLEM iterations"): the best
#: mean PSNR came at 49 iterations with R and at 72 with R̄ (flat from 50 to 100).
DEFAULT_ITERATIONS = 50
DEFAULT_ITERATIONS_FLYSCAN = 70
#: the discrepancy stop: a slice stops once the mean of (A·x − y)² / var(y) over the rays that
#: cross material (A·x > MATERIAL_SIGMAS · σ(y)) is at most this: the fit has reached the
#: noise. Rays through air alone are left out: A·x ≥ 0 cannot follow their negative noise, and
#: in a slice that holds little they would keep the mean above 1 for ever. Chosen with
#: MATERIAL_SIGMAS and MIN_ITERATIONS on phantoms of 128-256 px at 300-10000 photons and two
#: 3D scans (docs/benchmarks.md "MLEM stopped at the noise"); flat from 1.0 to 1.05.
DISCREPANCY = 1.0
MATERIAL_SIGMAS = 2.0
#: iterations before the discrepancy may stop a slice (the uniform start of a slice that holds
#: little crosses material nowhere)
MIN_ITERATIONS = 10
MAX_ITERATIONS = 150


def uniform_start(y: torch.Tensor, projector: Projector) -> torch.Tensor:
    """A constant image per slice (n·n, B) whose projections carry the measured total."""
    ones = torch.ones(projector.n_pixels, 1, device=y.device, dtype=y.dtype)
    a1 = projector.forward_columns(ones)  # (n_rays, 1)
    level = y.sum(dim=0, keepdim=True) / a1.sum().clamp_min(1e-12)
    return ones * level.clamp_min(1e-6)


def mlem(sino: torch.Tensor, projector: Projector, iterations: int = DEFAULT_ITERATIONS,
         x0: torch.Tensor | None = None, callback: Callable[[int, torch.Tensor], None] | None = None,
         eps: float = 1e-6, variance: torch.Tensor | None = None, max_iterations: int = MAX_ITERATIONS,
         stopped: list[int] | None = None) -> torch.Tensor:
    """MLEM of line integrals (B, n_angles, n_columns) → slices (B, n, n), attenuation per pixel.

    Negative and non-finite line integrals count as 0. ``x0`` (B, n, n) non-negative start
    (default: uniform); pixels no ray sees stay 0. ``callback(k, slices)`` after iteration k.

    ``variance`` (B, n_angles, n_columns) of the line integrals (:mod:`recon.io.noise`): each
    slice stops at the first iterate (from :data:`MIN_ITERATIONS` on) whose data fit reaches
    the noise (the mean of (A·x − y)²/var over rays crossing material ≤ :data:`DISCREPANCY`),
    after at most ``max_iterations``; a slice whose variance is NaN (noise unknown) runs
    ``iterations``. ``stopped``: filled with each slice's count.
    """
    n = projector.geometry.image_size
    y = torch.nan_to_num(sino.to(projector.device, projector.dtype), nan=0.0, posinf=0.0, neginf=0.0)
    y = y.clamp_min(0).reshape(-1, projector.n_rays).T.contiguous()  # (n_rays, B)
    ones = torch.ones(projector.n_rays, 1, device=y.device, dtype=y.dtype)
    sens = projector.adjoint_columns(ones)  # (n·n, 1)
    seen = sens > eps * sens.max()
    inv_sens = torch.where(seen, 1.0 / sens.clamp_min(eps), torch.zeros_like(sens))
    if x0 is None:
        x = uniform_start(y, projector)
    else:
        x = x0.to(y.device, y.dtype).reshape(-1, n * n).T.clamp_min(0).contiguous()
    x = x * seen
    budget, weight, known = _stop_plan(variance, y, iterations, max_iterations, projector)
    if weight is not None:
        data = torch.nan_to_num(sino.to(projector.device, projector.dtype), nan=0.0, posinf=0.0, neginf=0.0)
        data = data.reshape(-1, projector.n_rays).T  # not clamped: the noise as measured
        floor = torch.where(weight > 0, MATERIAL_SIGMAS / weight.sqrt(), torch.full_like(weight, float("inf")))
    count = torch.zeros(y.shape[1], dtype=torch.long)
    for k in range(int(budget.max())):
        ax = projector.forward_columns(x)
        active = budget > k
        if weight is not None and k >= MIN_ITERATIONS:
            material = ax > floor
            misfit = torch.where(material, (ax - data) ** 2 * weight, torch.zeros_like(ax)).sum(dim=0)
            fit = misfit <= DISCREPANCY * material.sum(dim=0)
            active &= ~(known & fit).cpu()
        if not active.any():
            break
        ratio = torch.where(ax > eps, y / ax.clamp_min(eps), torch.zeros_like(ax))
        update = x * projector.adjoint_columns(ratio) * inv_sens
        x = update if bool(active.all()) else torch.where(active.to(x.device)[None, :], update, x)
        count += active
        if callback is not None:
            callback(k + 1, x.T.reshape(-1, n, n))
    if stopped is not None:
        stopped.extend(int(c) for c in count)
    return x.T.reshape(-1, n, n)


def _stop_plan(variance: torch.Tensor | None, y: torch.Tensor, iterations: int, max_iterations: int,
               projector: Projector) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(B,) iterations each slice may run; the weights 1/var (n_rays, B) of the discrepancy
    stop (0 for an infinite variance: a column made up past the detector) and (B,) which
    slices' noise is known (no NaN variance), or None, None without ``variance``."""
    b = y.shape[1]
    if variance is None:
        return torch.full((b,), int(iterations), dtype=torch.long), None, None
    var = variance.to(projector.device, projector.dtype).reshape(b, -1).T
    known = ~torch.isnan(var).any(dim=0)
    budget = torch.where(known.cpu(), torch.tensor(int(max_iterations)), torch.tensor(int(iterations)))
    weight = torch.where(torch.isfinite(var) & (var > 0), 1.0 / var.clamp_min(1e-30), torch.zeros_like(var))
    return budget, weight, known
