"""Benchmark: an in-situ heating experiment made without flytomo, analysed by the ``flytomo`` commands.

The scans come from astra-toolbox's projector (not flytomo's), are written with plain h5py
the way a BLISS/nxtomomill NXtomo file is laid out — uint16 frames, darks, flats before
and after, ``image_key`` without ``image_key_control``, five return (alignment) frames at
the end, start times as ISO dates — over 360° with the rotation axis off the detector
centre. Each exposure is smeared over one angular step (``n_sub`` astra sub-angles averaged
in transmission) and photon-starved (Poisson). The particle, a cylinder taller than the
reconstructed rows, gains planar cracks right through it from scan to scan (so late scans
leave it in pieces). The temperature log is on the scans' clock (Unix seconds).

``flytomo init`` and ``flytomo run`` then reconstruct and analyse it with the embedded
defaults; the crack table is compared with the true removed volume, scan by scan.

    .venv/bin/python bench/foreign_experiment.py OUT [--size 112] [--rows 12] [--projections 180]
        [--photons 3000] [--shift 3.5] [--turn 360] [--method mlem-flyscan] [--phantom planes|grains]
        [--json FILE]

``--phantom grains``: the cylinder is made of Voronoi grains whose boundaries open one by one
(intergranular cracks, the way a layered cathode's secondary particle cracks).
``--phantom sphere``: a whole particle inside the rows (``--rows`` defaults to ``--size``), its
attenuation textured ±6 %, with six pores from the first scan and curved cracks 1.2–2.5 voxels
wide that end inside it (tips), added from scan to scan as the planes are.
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from benchio import save_json

#: cracks present in each scan (planes, added in this order)
CRACKS = (0, 0, 1, 2, 4, 6, 9, 12)
#: ``--phantom grains``: the share of grain boundaries open in each scan
OPEN_SHARES = (0.0, 0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6)
T0 = 1_700_000_000.0  # first scan start, Unix seconds
SPACING_S = 60.0


def phantom(size: int, rows: int, n_cracks: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(attenuation per pixel (rows, size, size) float32, particle mask): a cylinder of radius
    0.36 size through every row, minus ``n_cracks`` planar 2-voxel cracks through it."""
    rng = np.random.default_rng(seed)
    _, y, x = np.mgrid[:rows, :size, :size].astype(float)
    c = (size - 1) / 2
    particle = (x - c) ** 2 + (y - c) ** 2 < (0.36 * size) ** 2
    normals = rng.normal(size=(max(CRACKS), 2))
    normals /= np.linalg.norm(normals, axis=1)[:, None]
    offsets = rng.uniform(-0.22, 0.22, max(CRACKS)) * size
    solid = particle.copy()
    for j in range(n_cracks):
        solid &= np.abs((x - c) * normals[j, 0] + (y - c) * normals[j, 1] - offsets[j]) >= 1.0
    return (0.02 * solid).astype(np.float32), particle


def grains_phantom(size: int, rows: int, share: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(attenuation per pixel (rows, size, size) float32, particle mask): the cylinder of
    :func:`phantom` made of Voronoi grains about 0.12·size across (attenuation 0.02 ± 5 % from
    grain to grain), with ``share`` of the boundaries between grains open by 1.2 voxels
    (intergranular cracks, as a secondary particle of a layered cathode cracks; the same
    boundaries stay open as ``share`` grows)."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:rows, :size, :size].astype(float)
    c = (size - 1) / 2
    particle = (x - c) ** 2 + (y - c) ** 2 < (0.36 * size) ** 2
    spacing = 0.12 * size
    n_seeds = int(round((2 * 0.4 * size) ** 2 * (rows + 2 * spacing) / spacing ** 3))
    seeds = np.column_stack([rng.uniform(-spacing, rows + spacing, n_seeds),
                             rng.uniform(c - 0.4 * size, c + 0.4 * size, (n_seeds, 2))])
    points = np.column_stack([z[particle], y[particle], x[particle]])
    dist, near = cKDTree(seeds).query(points, k=2)
    a, b = near[:, 0], near[:, 1]
    # distance to the bisecting plane of the two nearest seeds
    gap = (dist[:, 1] ** 2 - dist[:, 0] ** 2) / (2.0 * np.linalg.norm(seeds[a] - seeds[b], axis=1))
    opens = rng.random((n_seeds, n_seeds))  # boundary (i, j) opens once share passes its draw
    opens = np.minimum(opens, opens.T)
    cracked = (gap < 0.6) & (opens[a, b] < share)
    density = 0.02 * rng.uniform(0.95, 1.05, n_seeds)
    vol = np.zeros(particle.shape, np.float32)
    vol[particle] = np.where(cracked, 0.0, density[a])
    return vol, particle


def sphere_phantom(size: int, rows: int, n_cracks: int, seed: int = 7
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(attenuation per pixel (rows, size, size) float32, particle mask, crack mask): an
    ellipsoid (semi-axes 0.34, 0.36, 0.38 of ``size`` in z, y, x, centred) of attenuation
    0.02 × (1 + 0.06 · a smooth random field, σ 2.5 voxels, unit s.d.), with six empty pores
    (radius 1.5–3 voxels) in every scan and ``n_cracks`` curved cracks: each a patch of a
    sphere's shell (radius 0.5–1.5 ``size``, width 1.2–2.5 voxels) within 0.15–0.3 ``size``
    of a point inside the particle, so it ends inside the particle. The same cracks, in the
    same order, for every ``n_cracks``."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:rows, :size, :size].astype(float)
    cz, c = (rows - 1) / 2, (size - 1) / 2
    particle = ((z - cz) / (0.34 * size)) ** 2 + ((y - c) / (0.36 * size)) ** 2 + ((x - c) / (0.38 * size)) ** 2 < 1
    field = ndi.gaussian_filter(rng.normal(size=particle.shape), 2.5)
    field /= field[particle].std()
    vol = np.where(particle, 0.02 * (1.0 + 0.06 * field), 0.0)
    empty = np.zeros(particle.shape, bool)
    for _ in range(6):  # pores: centres well inside the particle
        p = np.array([cz, c, c]) + rng.uniform(-0.2, 0.2, 3) * size
        empty |= (z - p[0]) ** 2 + (y - p[1]) ** 2 + (x - p[2]) ** 2 < rng.uniform(1.5, 3.0) ** 2
    cracks = np.zeros(particle.shape, bool)
    for j in range(12):
        point = np.array([cz, c, c]) + rng.uniform(-0.22, 0.22, 3) * size
        normal = rng.normal(size=3)
        normal /= np.linalg.norm(normal)
        radius, half_width = rng.uniform(0.5, 1.5) * size, rng.uniform(0.6, 1.25)
        extent = rng.uniform(0.15, 0.3) * size
        if j >= n_cracks:
            continue  # drawn all the same: crack j is the same in every scan
        centre = point + radius * normal
        shell = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) - radius
        near = (z - point[0]) ** 2 + (y - point[1]) ** 2 + (x - point[2]) ** 2 < extent ** 2
        cracks |= (np.abs(shell) < half_width) & near
    cracks &= particle & ~empty
    vol[empty | cracks] = 0.0
    return vol.astype(np.float32), particle, cracks


def astra_counts(vol: np.ndarray, angles: np.ndarray, n_det: int, shift: float, n_sub: int,
                 photons: float, rng: np.random.Generator) -> np.ndarray:
    """Fly-scan counts (angle, row, col): astra's 'linear' projector at ``n_sub`` sub-angles
    across each step, averaged in transmission, the axis ``shift`` px right of the detector
    centre, Poisson noise on ``photons`` per pixel plus a dark level of 100."""
    import astra

    step = float(np.median(np.diff(angles)))  # signed: the smear follows the turn
    size = vol.shape[1]
    trans = np.zeros((angles.size, vol.shape[0], n_det))
    for k in range(n_sub):
        a = angles + ((k + 0.5) / n_sub - 0.5) * step
        v = np.zeros((a.size, 6))
        v[:, 0], v[:, 1] = np.sin(a), -np.cos(a)
        v[:, 4], v[:, 5] = np.cos(a), np.sin(a)
        v[:, 2], v[:, 3] = -shift * v[:, 4], -shift * v[:, 5]
        proj = astra.create_projector("linear", astra.create_proj_geom("parallel_vec", n_det, v),
                                      astra.create_vol_geom(size, size))
        for r in range(vol.shape[0]):
            sid, sino = astra.create_sino(vol[r], proj)
            astra.data2d.delete(sid)
            trans[:, r] += np.exp(-sino) / n_sub
        astra.projector.delete(proj)
    return rng.poisson(photons * trans) + rng.poisson(100.0, trans.shape)


def detector_columns(size: int, shift: float) -> int:
    """Detector width (columns) for a ``size``-px object with the axis ``shift`` px off the
    middle: the object seen whole at every angle, with 8 columns of margin each side."""
    return size + 2 * int(np.ceil(abs(shift))) + 16


def write_bliss_nxtomo(path: Path, tomo: np.ndarray, angles_deg: np.ndarray, start_s: float,
                       photons: float, rng: np.random.Generator) -> None:
    """NXtomo as BLISS/nxtomomill lay it out, without image_key_control: darks, flats,
    projections, flats, then five return frames (image_key 0) back from the turn's end to 0°."""
    shape = tomo.shape[1:]
    darks = rng.poisson(100.0, (5, *shape))
    flats = rng.poisson(photons, (10, *shape)) + rng.poisson(100.0, (10, *shape))
    back = np.repeat(tomo[:1], 5, axis=0)
    data = np.concatenate([darks, flats[:5], tomo, flats[5:], back]).astype(np.uint16)
    key = np.r_[np.full(5, 2), np.full(5, 1), np.zeros(len(tomo)), np.full(5, 1), np.zeros(5)]
    turn = angles_deg[-1] + (angles_deg[1] - angles_deg[0])
    rot = np.r_[np.zeros(10), angles_deg, np.full(5, angles_deg[-1]), turn * np.array([1.0, 0.75, 0.5, 0.25, 0.0])]
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry0000")
        entry.attrs["NX_class"] = "NXentry"
        entry["definition"] = "NXtomo"
        entry["start_time"] = datetime.fromtimestamp(start_s, timezone.utc).isoformat()
        det = entry.create_group("instrument/detector")
        det["data"] = data
        det["image_key"] = key.astype(np.int32)
        det["x_pixel_size"] = 2e-8
        det["x_pixel_size"].attrs["units"] = "m"
        entry["sample/rotation_angle"] = rot
        entry["sample/rotation_angle"].attrs["units"] = "degree"


def make_experiment(out: Path, size: int = 112, rows: int = 12, n_proj: int = 180, n_sub: int = 8,
                    photons: float = 3000.0, shift: float = 3.5, cracks: tuple = CRACKS,
                    turn_deg: float = 360.0, kind: str = "planes") -> tuple[list[float], list[float]]:
    """Write ``out/raw/particle_NNN.nxs`` and ``out/temperature.csv``; returns the true
    fraction of each scan removed (cracks and pores: removed volume / particle volume) and of
    it the cracks'. ``turn_deg`` < 0 turns the other way (angles falling). ``kind``: "planes"
    (:func:`phantom`), "grains" (:func:`grains_phantom`, ``cracks`` then the share of its grain
    boundaries open in each scan) or "sphere" (:func:`sphere_phantom`)."""
    (out / "raw").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    angles = np.linspace(0.0, np.deg2rad(turn_deg), n_proj, endpoint=False)
    n_det = detector_columns(size, shift)
    truth, crack_truth = [], []
    for s, n_cracks in enumerate(cracks):
        crack = None  # planes and grains: all that is removed is cracks
        if kind == "sphere":
            vol, particle, crack = sphere_phantom(size, rows, n_cracks)
        else:
            vol, particle = (grains_phantom if kind == "grains" else phantom)(size, rows, n_cracks)
        truth.append(float(1.0 - np.count_nonzero(vol) / particle.sum()))
        crack_truth.append(truth[-1] if crack is None else float(crack.sum() / particle.sum()))
        tomo = astra_counts(vol, angles, n_det, shift, n_sub, photons, rng)
        write_bliss_nxtomo(out / "raw" / f"particle_{s:03d}.nxs", tomo, np.rad2deg(angles),
                           T0 + s * SPACING_S, photons, rng)
    t = np.arange(-30.0, len(cracks) * SPACING_S + 60.0, 5.0)
    pd.DataFrame({"time_s": T0 + t, "temperature_C": 25.0 + np.minimum(t.clip(0), 300.0) * 50.0 / 60.0}
                 ).to_csv(out / "temperature.csv", index=False)
    return truth, crack_truth


def main(argv: list[str] | None = None) -> dict:
    from hpc.cli import main as flytomo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--rows", type=int, help="rows (default 12; --phantom sphere: --size)")
    ap.add_argument("--projections", type=int, default=180)
    ap.add_argument("--photons", type=float, default=3000.0)
    ap.add_argument("--shift", type=float, default=3.5)
    ap.add_argument("--turn", type=float, default=360.0, help="degrees turned (negative: the other way)")
    ap.add_argument("--scans", type=int, default=len(CRACKS), help=f"the first N of {len(CRACKS)} scans")
    ap.add_argument("--phantom", choices=("planes", "grains", "sphere"), default="planes",
                    help="planar cracks through a uniform cylinder, open boundaries between Voronoi "
                         "grains, or curved cracks and pores in a textured particle inside the rows")
    ap.add_argument("--method", default="mlem-flyscan")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    grains = args.phantom == "grains"
    if args.rows is None:
        args.rows = args.size if args.phantom == "sphere" else 12
    truth, crack_truth = make_experiment(
        args.out, args.size, args.rows, args.projections, photons=args.photons, shift=args.shift,
        cracks=(OPEN_SHARES if grains else CRACKS)[:args.scans], turn_deg=args.turn, kind=args.phantom)
    t_sim = time.perf_counter() - t0
    exp = args.out / "exp"
    if flytomo(["init", str(args.out / "raw" / "particle_*.nxs"), "-T", str(args.out / "temperature.csv"),
                "--out", str(exp), "--method", args.method, "--force"]) != 0:
        raise SystemExit("flytomo init failed")
    if flytomo(["run", str(exp / "experiment.yaml"), "--no-progress"]) != 0:
        raise SystemExit("flytomo run failed")
    table = pd.read_csv(next(exp.glob("recon/*_analysis/crack_table.csv")))
    cf, pf = table["crack_fraction"].to_numpy(), table["pore_fraction"].to_numpy()
    err = (cf + pf - np.array(truth)) * 100
    print(f"{'scan':>4} {'truth %':>8} {'(cracks)':>8} {'cracks %':>9} {'pores %':>8} {'error pts':>9} "
          f"{'particle vox':>12} status")
    for i, row in table.iterrows():
        print(f"{i:>4} {100 * truth[i]:>8.2f} {100 * crack_truth[i]:>8.2f} {100 * cf[i]:>9.2f} {100 * pf[i]:>8.2f} {err[i]:>+9.2f} "
              f"{int(row['particle_volume_vox']):>12} {row['status']}")
    low = np.array(truth) <= 0.12
    out = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
           "truth": truth, "crack_truth": crack_truth,
           "crack_mae_pp": float(np.abs(cf - np.array(crack_truth)).mean() * 100), "crack_fraction": cf.tolist(), "pore_fraction": pf.tolist(),
           "particle_volume_vox": table["particle_volume_vox"].tolist(), "status": table["status"].tolist(),
           "mae_pp": float(np.abs(err).mean()), "mae_pp_up_to_12pct": float(np.abs(err[low]).mean()),
           "simulate_s": t_sim, "total_s": time.perf_counter() - t0}
    print(f"MAE {out['mae_pp']:.2f} points (scans up to 12 % cracks: {out['mae_pp_up_to_12pct']:.2f}); "
          f"simulated in {t_sim:.0f} s, {out['total_s']:.0f} s in all")
    save_json(args.json, out, indent=1)
    return out


if __name__ == "__main__":
    main()
