"""The synthetic heating experiment: program, kinetics, determinism, files."""
from __future__ import annotations

import numpy as np

from hpc.experiment_sim import (SimSettings, crack_levels, program,
                                simulate_experiment, temperature_at)


def test_program_and_kinetics():
    segments, spacing, starts = program(24)
    assert spacing % 12 == 0 and np.all(np.diff(starts) == spacing)
    assert starts[-1] + 6 <= segments[-1].end_s
    t = np.array([30.0, 240.0, 420.0, 600.0, 720.0])
    np.testing.assert_allclose(temperature_at(segments, t), [400, 550, 700, 700, 800])
    c = crack_levels(segments, np.array([50.0, 200.0, 420.0, 600.0, 720.0, segments[-1].end_s]))
    assert c[0] == 0.0                      # pre-heat hold: no cracks
    assert c[1] < c[2]                      # fast ramp: cracks grow
    assert c[3] < 0.8 * c[2]                # 3-min hold: partial healing
    assert c[4] > c[3] and c[5] < c[4]      # second ramp grows, final hold heals
    assert program(65)[1] == 12.0           # enough scans: one every 12 s


def test_deterministic_and_complete(sim, tmp_path):
    s = sim.settings
    again = simulate_experiment(tmp_path, SimSettings(**{**s.__dict__}))
    for a, b in zip(sim.scans, again.scans):
        assert a.read_bytes() == b.read_bytes()
    assert (sim.folder / "raw" / "temperature.csv").read_text() == again.temperature_log.read_text()
    truth = np.loadtxt(sim.truth_table, delimiter=",", skiprows=1)
    assert truth.shape == (s.n_scans, 6) and truth[0, 5] == 0 and truth[:, 5].max() > 0.005
    z = np.load(sim.truth_volumes)
    assert z["volume"].shape == (s.n_scans, s.size, s.size, s.size) and z["crack_mask"].dtype == bool
    from recon.io import open_scan

    r = open_scan(sim.scans[1])
    assert r.shape[1:] == (s.size, s.size) and r.metadata["scan_time"] > 0
    # the files say how long a scan took, as the config does (a blind probe: `init` on them read
    # every temperature at the next scan's start, 90 s late, +25 to +73 C)
    assert r.metadata["duration_s"] == 6.0


def test_default_projections_never_overlap_their_exposures():
    """1.5 × size projections per half turn, capped at 180° / blur: the angle step is never
    shorter than an exposure's arc (a 128-px demo took 192 of 1.5°, which `check` flags)."""
    from hpc.experiment_sim import default_n_angles

    assert [default_n_angles(n, 1.5) for n in (32, 64, 80, 128, 512)] == [48, 96, 120, 120, 120]
    assert default_n_angles(128, 0.0) == 192 and default_n_angles(128, 1.0) == 180
    for size in (64, 128):
        a = SimSettings(size=size).angles_deg()
        assert np.diff(a).min() >= SimSettings().blur_angle_deg - 1e-9
