"""Synthetic cracked particles and experiment stores with known truth, for the analysis tests."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

SOLID = 0.035  # attenuation per pixel

# crack k: (normal axis, centre as fractions of the particle radius from the particle centre)
# the discs sit in separate regions so that they never touch each other or a pore
_CRACKS = [
    (0, (-0.35, -0.30, -0.30)),
    (1, (0.35, 0.15, -0.30)),
    (2, (0.00, -0.35, 0.45)),
    (0, (0.45, 0.15, 0.45)),
]
_PORES = [(0.30, -0.55, -0.15), (-0.45, 0.45, 0.35), (0.05, 0.55, -0.55)]


def cracked_particle(size: int = 64, n_cracks: int = 2, crack_width: int = 2, crack_radius: float = 0.35,
                     crack_scale: float = 1.0, pores: bool = True, noise: float = 0.004, blur: float = 0.0,
                     seed: int = 0):
    """A ball of ``SOLID`` with thin planar crack discs and three round pores.

    ``crack_radius`` is the disc radius as a fraction of the particle radius, multiplied by
    ``crack_scale`` (0 = no cracks). Returns (volume float32 (z, y, x), truth dict with bool
    masks ``particle``, ``cracks``, ``pores``).
    """
    rng = np.random.default_rng(seed)
    n = size
    c = (n - 1) / 2
    r = 0.40 * n
    g = np.ogrid[:n, :n, :n]
    particle = sum((a - c) ** 2 for a in g) <= r * r
    cracks = np.zeros((n, n, n), bool)
    rad = crack_radius * crack_scale * r
    for axis, frac in _CRACKS[:n_cracks]:
        if rad <= 0:
            break
        ctr = [c + f * r for f in frac]
        a0 = int(np.floor(ctr[axis]))
        slab = (g[axis] >= a0) & (g[axis] < a0 + crack_width)
        others = [i for i in range(3) if i != axis]
        disc = sum((g[i] - ctr[i]) ** 2 for i in others) <= rad * rad
        cracks |= slab & disc & particle
    pore_mask = np.zeros((n, n, n), bool)
    if pores:
        pr = max(2.5, 0.06 * n)
        for frac in _PORES:
            ctr = [c + f * r for f in frac]
            pore_mask |= sum((g[i] - ctr[i]) ** 2 for i in range(3)) <= pr * pr
        pore_mask &= particle & ~cracks
    vol = np.where(particle & ~cracks & ~pore_mask, SOLID, 0.0)
    if blur > 0:
        vol = ndi.gaussian_filter(vol, blur)
    vol = vol + rng.normal(0.0, noise, vol.shape)
    return vol.astype(np.float32), {"particle": particle, "cracks": cracks, "pores": pore_mask}


def write_store(path, volumes, scans: list[dict] | None, rows_per_chunk: int = 16, series: bool = True,
                extra_attrs: dict | None = None):
    """Write an experiment store following docs/architecture.md: array "0" (t, z, y, x)
    float32 (or (z, y, x) when ``series`` is False), root attribute ``flytomo`` with ``scans``
    (omitted when ``scans`` is None)."""
    import zarr

    vols = np.asarray(volumes, dtype=np.float32)
    g = zarr.open_group(str(path), mode="w")
    if series:
        chunks = (1, min(rows_per_chunk, vols.shape[1]), vols.shape[2], vols.shape[3])
    else:
        chunks = (min(rows_per_chunk, vols.shape[0]), vols.shape[1], vols.shape[2])
    a = g.create_array("0", shape=vols.shape, chunks=chunks, dtype="float32", fill_value=0.0)
    if vols.size:
        a[...] = vols
    attrs = {"version": "test", "method": "synthetic", "options": {}, "config": {}}
    if scans is not None:
        attrs["scans"] = scans
    attrs.update(extra_attrs or {})
    g.attrs["flytomo"] = attrs
    return path


def heating_series(path, crack_scales=(0.0, 0.5, 0.8, 1.0, 1.2, 0.9, 0.6), size: int = 48, duration_s: float = 10.0,
                   spacing_s: float = 60.0, noise: float = 0.004, n_cracks: int = 3, seed: int = 0,
                   temperature_in_metadata: bool = True):
    """A synthetic heating experiment store: the cracks grow then shrink with ``crack_scales``.

    Returns (store path, truth crack fractions (np.ndarray), scans list).
    """
    vols, truth, scans = [], [], []
    for i, s in enumerate(crack_scales):
        v, tr = cracked_particle(size, n_cracks=n_cracks, crack_scale=s, noise=noise, seed=seed + i)
        vols.append(v)
        truth.append(tr["cracks"].sum() / tr["particle"].sum())
        start = 30.0 + i * spacing_s
        scans.append({"index": i, "scan_id": 1000 + i, "file": f"scan_{1000 + i}.h5",
                      "start_time_s": start, "mid_time_s": start + duration_s / 2, "duration_s": duration_s,
                      "temperature_C": (25.0 + 5.0 * (start + duration_s / 2) / 60.0) if temperature_in_metadata
                      else None, "status": "done"})
    write_store(path, np.stack(vols), scans)
    return path, np.asarray(truth), scans
