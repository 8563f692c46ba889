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
from recon.operators import Projector, sub_angle_rays


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


class FlyScanTransmission:
    """Noise-free mean transmission of a fly-scan, built once per geometry, applied to many objects.

    ``__call__(obj)``: obj (z, n, n) attenuation per pixel → (z, n_angles, n_columns), the mean of
    exp(−R(θ_j+δᵢ)μ) over ``n_sub`` sub-angles δᵢ (midpoints of n_sub equal parts of the
    exposure). One projector over all sub-angles; it falls back to angle blocks built on the
    fly when that matrix would not fit in memory.
    """

    def __init__(self, geometry: ScanGeometry, n_sub: int = 16, device: str = "cpu") -> None:
        self.geometry, self.n_sub = geometry, int(n_sub)
        sub, offsets = sub_angle_rays(geometry, self.n_sub)  # ordered (angle, sub-angle)
        self.projector = Projector(geometry, device=device, angles=sub, offsets=offsets)

    def __call__(self, obj: np.ndarray) -> np.ndarray:
        vol = torch.as_tensor(np.asarray(obj, dtype=np.float32), device=self.projector.device)
        with torch.no_grad():
            p = self.projector.forward(vol)  # (z, n_angles·n_sub, n_columns)
            t = torch.exp(-p).reshape(p.shape[0], self.geometry.n_angles, self.n_sub, -1).mean(dim=2)
        return t.cpu().numpy()


def counts_from_transmission(transmission: np.ndarray, geometry: ScanGeometry, i0: float, *,
                             dark: float = 100.0, rng: np.random.Generator, n_flats: int = 10,
                             n_darks: int = 10) -> SimulatedScan:
    """Poisson counts (photons ``i0`` per pixel per frame, Poisson dark offset ``dark``) from a
    mean transmission (z, n_angles, n_columns), with flat and dark frames."""
    counts = rng.poisson(i0 * transmission.transpose(1, 0, 2)).astype(np.float32)
    shape = (transmission.shape[0], transmission.shape[2])
    tomo = counts + rng.poisson(dark, size=counts.shape).astype(np.float32)
    flats = (rng.poisson(i0, size=(n_flats, *shape)) + rng.poisson(dark, size=(n_flats, *shape))).astype(np.float32)
    darks = rng.poisson(dark, size=(n_darks, *shape)).astype(np.float32)
    return SimulatedScan(tomo, flats, darks, geometry.angles_deg, geometry.blur_angle_deg, geometry.center,
                         float(i0), float(dark))


def simulate_flyscan(obj: np.ndarray, angles_deg: np.ndarray, blur_angle_deg: float, i0: float,
                     *, dark: float = 100.0, n_sub: int = 16, seed: int = 0, n_flats: int = 10,
                     n_darks: int = 10, center: float | None = None, device: str = "cpu",
                     jitter: tuple[np.ndarray, np.ndarray] | None = None, tilt_deg: float = 0.0) -> SimulatedScan:
    """Simulate a fly-scan of ``obj`` — an image (n, n) or a volume (z, n, n), attenuation per pixel.

    ``i0`` photons per detector pixel per frame in the open beam, ``dark`` counts of dark offset
    (Poisson) in every frame. Detector width = n; ``center`` shifts the rotation axis
    (default (n−1)/2). ``jitter``: (dy, dx), each (n_angles,) pixels, a stage that puts the
    sample dy rows lower and dx columns right in each exposure: dx exactly (the projector's
    offsets), dy by a cubic-spline shift of each frame's transmission along the rows (the
    volume's rows are its only samples up and down). ``tilt_deg``: the rotation axis leaning
    that much in the detector plane, its column growing by tan(tilt) per row through the axis
    column at the middle row — in parallel beam the upright scan's frames turned by the same
    angle, which is what is done (cubic spline, to the noise-free transmission). Seeded: the
    same arguments give the same counts.
    """
    from scipy import ndimage

    obj = np.asarray(obj, dtype=np.float32)
    vol = obj[None] if obj.ndim == 2 else obj
    dy, dx = (None, None) if jitter is None else (np.asarray(jitter[0], float), np.asarray(jitter[1], float))
    geometry = ScanGeometry.create(angles_deg, vol.shape[-1], center=center, blur_angle_deg=blur_angle_deg,
                                   offsets=dx)
    transmission = FlyScanTransmission(geometry, n_sub, device)(vol)
    if dy is not None and dy.any():
        for i in np.flatnonzero(dy):
            transmission[:, i] = ndimage.shift(transmission[:, i], (dy[i], 0.0), order=3, mode="nearest")
    if tilt_deg:
        transmission = _lean(transmission, tilt_deg, geometry.center)
    return counts_from_transmission(transmission, geometry, i0, dark=dark, rng=np.random.default_rng(seed),
                                    n_flats=n_flats, n_darks=n_darks)


def _lean(transmission: np.ndarray, tilt_deg: float, center: float) -> np.ndarray:
    """Frames of ``transmission`` (z, angle, col) turned so that the vertical line through
    column ``center`` runs through (center + tan(tilt)·(z − z_mid), z): each (z, col) frame
    sampled at the upright point (cubic spline, edges held)."""
    from scipy import ndimage

    nz, _, nc = transmission.shape
    phi = np.deg2rad(tilt_deg)
    zz, xx = np.mgrid[:nz, :nc].astype(np.float64)
    dz, dx = zz - (nz - 1) / 2, xx - center
    # the upright frame's coordinates of each detector pixel: the axis's frame (see alignment.Tilt)
    src_x = center + np.cos(phi) * dx - np.sin(phi) * dz
    src_z = (nz - 1) / 2 + np.sin(phi) * dx + np.cos(phi) * dz
    out = np.empty_like(transmission)
    for i in range(transmission.shape[1]):
        out[:, i] = ndimage.map_coordinates(transmission[:, i], [src_z, src_x], order=3, mode="nearest")
    return out


def line_integrals_from_counts(scan: SimulatedScan) -> np.ndarray:
    """The scan's line integrals (z, n_angles, n_columns) through flytomo's own normalisation
    (without DataHintWarning: a simulated medium may fill the outer columns on purpose)."""
    import warnings

    from recon.io.preprocess import DataHintWarning, line_integrals
    from recon.io.scan import RawChunk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataHintWarning)
        return line_integrals(RawChunk(scan.tomo, scan.flats, scan.darks))
