"""A synthetic in-situ heating experiment with known truth (the seed paper's temperature program).

Temperature program (°C, seconds on the log's clock): a pre-heat hold at 400 °C (60 s),
50 °C/min to 700 °C (360 s), a 3-minute hold, 50 °C/min to 800 °C (120 s), and a final hold
long enough for the last scan (and one scan spacing more). One fly-scan every 12 s (180° at 30 °/s: 6 s); when fewer
scans are asked for than the program needs, every k-th 12-s slot is kept so the scans still
span the whole program.

Cracking (a simple kinetic model driven by the heating rate r in °C/min, level c in [0, 1]):

    dc/dt = K_GROW · (r / 50) · (1 − c)      while heating faster than R_GROW °C/min
    dc/dt = −K_HEAL · c                       in a hold (|r| < R_HOLD) at ≥ T_HEAL °C

so cracks open during the fast ramps and partly heal during the isothermal holds. The
volume of scan i is :func:`recon.phantoms.heating_particle` (size, c at mid-scan, seed):
the same particle throughout, only its cracks change.

Each scan is simulated as the seed's Eq. 4–5 (counts = Poisson of I0 × the mean of
exp(−line integral) over sub-angles spread over the exposure; dark offset; flats and darks)
— as :func:`recon.simulate.simulate_flyscan`, but with the sub-angle projector built once
for the whole experiment — and written as an FXI file with its scan time.

Output folder::

    raw/scan_0000.h5 ...           FXI HDF5, scan_time = scan start (s)
    raw/temperature.csv            time_s, temperature_C every 2 s
    truth/crack_fraction.csv       scan_index, scan_id, time_s (mid-scan), temperature_C,
                                   crack_level, crack_fraction
    truth/volumes.npz              volume (t, z, y, x) float32, crack_mask (t, z, y, x) bool,
                                   particle_mask (z, y, x) bool
    truth/experiment.json          every setting, the program and the kinetic constants
    experiment.yaml                the experiment config for `flytomo run`
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from recon.errors import FlytomoError

SCAN_INTERVAL_S = 12.0
SCAN_DURATION_S = 6.0       # 180° at 30 °/s
LOG_STEP_S = 2.0
K_GROW = 0.0029             # 1/s at 50 °C/min
K_HEAL = 0.0024             # 1/s
R_GROW = 10.0               # °C/min
R_HOLD = 2.0                # °C/min
T_HEAL = 600.0              # °C


@dataclass
class Segment:
    kind: str          # "hold" or "ramp"
    start_s: float
    end_s: float
    t_start_C: float
    t_end_C: float


def program(n_scans: int, interval_s: float = SCAN_INTERVAL_S) -> tuple[list[Segment], float, np.ndarray]:
    """The temperature program, the scan spacing and the scan start times for ``n_scans`` scans.

    Returns (segments, spacing_s, starts (n_scans,)). Core: hold 400 °C 60 s, ramp 50 °C/min
    to 700 (360 s), hold 180 s, ramp to 800 (120 s); a final hold of ≥ 60 s covers the last scan.
    """
    core = [("hold", 60.0, 400.0, 400.0), ("ramp", 360.0, 400.0, 700.0),
            ("hold", 180.0, 700.0, 700.0), ("ramp", 120.0, 700.0, 800.0)]
    core_len = sum(c[1] for c in core)
    k = max(1, math.ceil(core_len / (interval_s * max(1, n_scans - 1))))
    spacing = interval_s * k
    starts = np.arange(n_scans, dtype=np.float64) * spacing
    # the log outlasts the last scan by one spacing, so even a reader that takes the scan
    # spacing as the duration finds every scan inside the log
    end_needed = float(starts[-1]) + max(spacing, SCAN_DURATION_S) + LOG_STEP_S
    segments, t = [], 0.0
    for kind, dur, a, b in core:
        segments.append(Segment(kind, t, t + dur, a, b))
        t += dur
    segments.append(Segment("hold", t, max(t + 60.0, end_needed), 800.0, 800.0))
    return segments, spacing, starts


def temperature_at(segments: list[Segment], t: np.ndarray) -> np.ndarray:
    """Programmed temperature (°C) at times ``t`` (s), piecewise linear."""
    xs = [segments[0].start_s] + [s.end_s for s in segments]
    ys = [segments[0].t_start_C] + [s.t_end_C for s in segments]
    return np.interp(np.asarray(t, dtype=np.float64), xs, ys)


def crack_levels(segments: list[Segment], times: np.ndarray, dt: float = 0.5) -> np.ndarray:
    """Crack level c(t) of the kinetic model (module docstring) at ``times`` (s)."""
    end = max(float(np.max(times)), segments[-1].end_s)
    grid = np.arange(0.0, end + dt, dt)
    temp = temperature_at(segments, grid)
    rate = np.gradient(temp, grid) * 60.0  # °C/min
    c = np.zeros_like(grid)
    for i in range(1, grid.size):
        r, T, ci = rate[i - 1], temp[i - 1], c[i - 1]
        dc = 0.0
        if r > R_GROW:
            dc = K_GROW * (r / 50.0) * (1.0 - ci)
        elif abs(r) < R_HOLD and T >= T_HEAL:
            dc = -K_HEAL * ci
        c[i] = min(1.0, max(0.0, ci + dt * dc))
    return np.interp(np.asarray(times, dtype=np.float64), grid, c)


@dataclass
class SimSettings:
    size: int = 64
    n_scans: int = 24
    seed: int = 0
    n_angles: int | None = None        # default round(1.5 · size), at most 180° / blur (exposures cannot overlap)
    blur_angle_deg: float = 1.5
    i0: float = 5000.0
    dark: float = 100.0
    n_sub: int = 8
    n_flats: int = 10
    n_darks: int = 10
    method: str = "mlem-flyscan"
    rows_per_chunk: int | None = None  # default size // 4

    def angles_deg(self) -> np.ndarray:
        """(n_angles,) float64: the exposure middles over a half turn, in degrees."""
        n = self.n_angles or default_n_angles(self.size, self.blur_angle_deg)
        return (np.arange(n) + 0.5) * 180.0 / n


def default_n_angles(size: int, blur_angle_deg: float) -> int:
    """Projections per half turn the simulator takes by default for ``size``-px slices: 1.5 ×
    size, but no more than 180° / blur (degrees per exposure): the exposures of one continuous
    turn cannot overlap (the seed's 512-px scans: 120 of 1.5°)."""
    n = int(round(1.5 * size))
    return min(n, int(math.floor(180.0 / blur_angle_deg + 1e-9))) if blur_angle_deg > 0 else n


@dataclass
class SimulatedExperiment:
    folder: Path
    config: Path
    scans: list[Path]
    temperature_log: Path
    truth_table: Path
    truth_volumes: Path
    crack_fraction: np.ndarray
    seconds: float
    settings: SimSettings = field(default_factory=SimSettings)


def simulate_experiment(folder: str | Path, settings: SimSettings | None = None,
                        progress: bool = False, overwrite: bool = False) -> SimulatedExperiment:
    """Write the synthetic heating experiment into ``folder`` (module docstring); deterministic
    from ``settings.seed``. Raises :class:`FlytomoError` when the folder already holds scans
    (unless ``overwrite``)."""
    from recon.geometry import ScanGeometry
    from recon.io import write_fxi
    from recon.phantoms import heating_particle, particle_mask
    from recon.simulate import FlyScanTransmission, counts_from_transmission

    from hpc.config import CONFIG_NAME, default_config, dump_config

    s = settings or SimSettings()
    if s.size < 16:
        raise FlytomoError("--size", f"must be ≥ 16, got {s.size}")
    if s.n_scans < 2:
        raise FlytomoError("--scans", f"must be ≥ 2, got {s.n_scans}")
    t_begin = time.perf_counter()
    folder = Path(folder)
    raw, truth = folder / "raw", folder / "truth"
    if raw.exists() and any(raw.glob("scan_*.h5")) and not overwrite:
        raise FlytomoError(folder, "already holds a simulated experiment (raw/scan_*.h5); "
                                   "choose another folder or pass --overwrite")
    raw.mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)

    segments, spacing, starts = program(s.n_scans)
    mids = starts + SCAN_DURATION_S / 2
    levels = crack_levels(segments, mids)
    angles = s.angles_deg()
    n_angles = angles.size
    geometry = ScanGeometry.create(angles, s.size, blur_angle_deg=s.blur_angle_deg)
    forward = FlyScanTransmission(geometry, s.n_sub)  # built once, used for every scan

    # temperature log: the program, every 2 s, with a little thermocouple noise
    t_log = np.arange(0.0, segments[-1].end_s + LOG_STEP_S / 2, LOG_STEP_S)
    rng = np.random.default_rng(np.random.SeedSequence([s.seed, 7]))
    temp_log = temperature_at(segments, t_log) + rng.normal(0.0, 0.3, t_log.size)
    log_path = raw / "temperature.csv"
    log_path.write_text("time_s,temperature_C\n" + "".join(f"{a:.1f},{b:.2f}\n" for a, b in zip(t_log, temp_log)))

    envelope = particle_mask(s.size, s.seed)
    volumes = np.empty((s.n_scans, s.size, s.size, s.size), np.float32)
    cracks = np.empty((s.n_scans, s.size, s.size, s.size), bool)
    fractions = np.empty(s.n_scans)
    files = []
    it = range(s.n_scans)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="simulate", unit="scan", disable=None)  # None: no bar where stderr is no terminal
    for i in it:
        vol, mask = heating_particle(s.size, float(levels[i]), s.seed)
        volumes[i], cracks[i] = vol, mask
        fractions[i] = mask.sum() / max(1, envelope.sum())
        rng_i = np.random.default_rng(np.random.SeedSequence([s.seed, 1000 + i]))
        scan = counts_from_transmission(forward(vol), geometry, s.i0, dark=s.dark, rng=rng_i,
                                        n_flats=s.n_flats, n_darks=s.n_darks)
        path = raw / f"scan_{i:04d}.h5"
        write_fxi(path, scan, scan_id=i, scan_time=float(starts[i]), scan_duration_s=SCAN_DURATION_S)
        files.append(path)

    temps = np.interp(mids, t_log, temperature_at(segments, t_log))
    table = truth / "crack_fraction.csv"
    table.write_text("scan_index,scan_id,time_s,temperature_C,crack_level,crack_fraction\n" + "".join(
        f"{i},{i},{mids[i]:.2f},{temps[i]:.2f},{levels[i]:.5f},{fractions[i]:.6f}\n" for i in range(s.n_scans)))
    vols = truth / "volumes.npz"
    np.savez_compressed(vols, volume=volumes, crack_mask=cracks, particle_mask=envelope)
    (truth / "experiment.json").write_text(json.dumps({
        "settings": asdict(s), "n_angles": n_angles, "scan_interval_s": spacing,
        "scan_duration_s": SCAN_DURATION_S, "program": [asdict(g) for g in segments],
        "kinetics": {"K_GROW": K_GROW, "K_HEAL": K_HEAL, "R_GROW": R_GROW, "R_HOLD": R_HOLD, "T_HEAL": T_HEAL},
    }, indent=2) + "\n")

    cfg = default_config("raw/scan_*.h5", "raw/temperature.csv", output="recon/experiment.zarr", method=s.method)
    cfg["scan_duration_s"] = SCAN_DURATION_S
    cfg["rows_per_chunk"] = s.rows_per_chunk or max(1, s.size // 4)
    cfg["analysis"]["out"] = "analysis"
    config = folder / CONFIG_NAME
    dump_config(cfg, config, header=(
        f"# flytomo experiment: synthetic heating run ({s.n_scans} scans, {s.size} px, seed {s.seed}),\n"
        "# made by `flytomo simulate-experiment`. Paths are relative to this file's folder."))
    return SimulatedExperiment(folder, config, files, log_path, table, vols, fractions,
                               time.perf_counter() - t_begin, s)
