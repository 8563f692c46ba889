"""Fly-scan data from an image or a volume: the seed paper's Eq. 4–5.

Each frame j integrates the object over the exposure: its counts are Poisson with mean
(I0/n)·Σᵢ exp(−R(θ_j+δᵢ)μ) — the mean of the sub-angle intensities, not the exponential
of the mean line integral — plus a dark offset. Flats and darks come with it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recon.geometry import ScanGeometry
from recon.operators import Projector


@dataclass
class SimulatedScan:
    """Raw counts of one simulated fly-scan.

    tomo : (n_angles, z, n_columns) float32 counts; flats, darks : (k, z, n_columns) float32;
    angles_deg : (n_angles,) exposure middles; blur_angle_deg : Δθ; center : rotation-axis column.
    """

    tomo: np.ndarray
    flats: np.ndarray
    darks: np.ndarray
    angles_deg: np.ndarray
    blur_angle_deg: float
    center: float
    i0: float
    dark: float

    def geometry(self) -> ScanGeometry:
        return ScanGeometry.create(self.angles_deg, self.tomo.shape[2], center=self.center,
                                   blur_angle_deg=self.blur_angle_deg)


def flyscan_transmission(obj: np.ndarray, geometry: ScanGeometry, n_sub: int = 16,
                         device: str = "cpu") -> np.ndarray:
    """Noise-free mean transmission (z, n_angles, n_columns) of ``obj`` (z, n, n), attenuation/pixel.

    The mean over ``n_sub`` sub-angles spaced evenly over each exposure (midpoints), one
    projector per sub-angle so that memory stays that of one ordinary projector.
    """
    vol = torch.as_tensor(np.asarray(obj, dtype=np.float32), device=device)
    deltas = geometry.blur_angle * ((np.arange(n_sub) + 0.5) / n_sub - 0.5)
    total = None
    for d in deltas:
        proj = Projector(geometry, device=device, angles=geometry.angles + d)
        t = torch.exp(-proj.forward(vol))
        total = t if total is None else total + t
    return (total / n_sub).cpu().numpy()


def simulate_flyscan(obj: np.ndarray, angles_deg: np.ndarray, blur_angle_deg: float, i0: float,
                     *, dark: float = 100.0, n_sub: int = 16, seed: int = 0, n_flats: int = 10,
                     n_darks: int = 10, center: float | None = None, device: str = "cpu") -> SimulatedScan:
    """Simulate a fly-scan of ``obj`` — an image (n, n) or a volume (z, n, n), attenuation per pixel.

    ``i0`` photons per detector pixel per frame in the open beam, ``dark`` counts of dark offset
    (Poisson) in every frame. Detector width = n; ``center`` shifts the rotation axis
    (default (n−1)/2). Seeded: the same arguments give the same counts.
    """
    obj = np.asarray(obj, dtype=np.float32)
    vol = obj[None] if obj.ndim == 2 else obj
    n = vol.shape[-1]
    geometry = ScanGeometry.create(angles_deg, n, center=center, blur_angle_deg=blur_angle_deg)
    transmission = flyscan_transmission(vol, geometry, n_sub=n_sub, device=device)  # (z, a, c)
    rng = np.random.default_rng(seed)
    counts = rng.poisson(i0 * transmission.transpose(1, 0, 2)).astype(np.float32)
    shape = (vol.shape[0], n)
    tomo = counts + rng.poisson(dark, size=counts.shape).astype(np.float32)
    flats = (rng.poisson(i0, size=(n_flats, *shape)) + rng.poisson(dark, size=(n_flats, *shape))).astype(np.float32)
    darks = rng.poisson(dark, size=(n_darks, *shape)).astype(np.float32)
    return SimulatedScan(tomo, flats, darks, np.asarray(angles_deg, dtype=np.float64),
                         float(blur_angle_deg), geometry.center, float(i0), float(dark))


def line_integrals_from_counts(scan: SimulatedScan) -> np.ndarray:
    """−log((tomo − dark)/(flat − dark)) as (z, n_angles, n_columns) float32, transmission ≥ 1e-3."""
    dark = scan.darks.mean(axis=0)
    flat = scan.flats.mean(axis=0) - dark
    t = (scan.tomo - dark[None]) / np.maximum(flat[None], 1e-6)
    return (-np.log(np.clip(t, 1e-3, None))).transpose(1, 0, 2).astype(np.float32)
